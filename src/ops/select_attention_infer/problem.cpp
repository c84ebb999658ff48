#include "ops/select_attention_infer/problem.hpp"

#include <algorithm>

#include "core/validate.hpp"

namespace opennsa::detail::select_attention_infer {
namespace {

constexpr const char* kKvLens = "actualKvSeqLenOptional";
constexpr const char* kQLens = "actualQSeqLenOptional";
constexpr const char* kTable = "blockTableOptional";

Layout parse_layout(const std::string& s) {
    if (s == "BSND") return Layout::bsnd;
    if (s == "BSH") return Layout::bsh;
    if (s == "TND") return Layout::tnd;
    invalid("layoutOptional = \"", s, "\" is not supported (expected \"BSND\", \"BSH\" or \"TND\")");
}

const char* layout_name(Layout l) { return l == Layout::bsnd ? "BSND" : l == Layout::bsh ? "BSH" : "TND"; }

// query / out: rank 4 [B, Q, N1, D] (BSND), 3 [B, Q, N1*D] (BSH) or 3 [T, N1, D] (TND). Returns the
// per-head dim D after checking the head count.
std::int64_t head_dim(const Arg& a, Layout layout, std::int64_t heads, const char* heads_name) {
    const TensorView& t = *a.t;
    check_rank(a, layout == Layout::bsnd ? 4 : 3, layout == Layout::bsnd ? " (layout BSND: [B, S, N, D])"
                                                  : layout == Layout::bsh ? " (layout BSH: [B, S, N*D])"
                                                                          : " (layout TND: [T, N, D])");
    if (layout == Layout::bsh) {
        if (t.shape[2] % heads != 0 || t.shape[2] == 0)
            invalid(a.name, ".shape[2] = ", t.shape[2], " must be ", heads_name, " = ", heads,
                    " heads times a head dim >= 1 (layout BSH)");
        return t.shape[2] / heads;
    }
    const int hd = layout == Layout::bsnd ? 2 : 1;
    check_dim(a, hd, heads, heads_name);
    return t.shape[hd + 1];
}

TokenRows token_rows(const TensorView& t, Layout layout, std::int64_t dim) {
    switch (layout) {
        case Layout::bsnd: return {t.data, t.strides[0], t.strides[1], t.strides[2], t.strides[3]};
        case Layout::bsh: return {t.data, t.strides[0], t.strides[1], dim * t.strides[2], t.strides[2]};
        case Layout::tnd: break;
    }
    return {t.data, 0, t.strides[0], t.strides[1], t.strides[2]};
}

// Per-batch lengths: B entries; L_b >= Q_b >= 1.
void read_lengths(const SelectAttentionInferParams& params, Problem& p) {
    if (!params.actual_kv_seq_len)
        fail(ErrorCode::null_pointer, concat(kKvLens, " is required (the cached tokens L_b of each batch)"));
    p.kv_len = *params.actual_kv_seq_len;
    if (static_cast<std::int64_t>(p.kv_len.size()) != p.B)
        invalid(kKvLens, ": ", p.kv_len.size(), " entries, must equal the batch count ", p.B, " (", kTable,
                ".shape[0])");
    if (params.actual_q_seq_len) {
        p.q_len = *params.actual_q_seq_len;
        if (static_cast<std::int64_t>(p.q_len.size()) != p.B)
            invalid(kQLens, ": ", p.q_len.size(), " entries, must equal the batch count ", p.B, " (", kTable,
                    ".shape[0])");
    } else {
        p.q_len.assign(static_cast<std::size_t>(p.B), 1);
    }
    for (std::size_t b = 0; b < p.q_len.size(); ++b) {
        if (p.q_len[b] < 1) invalid(kQLens, "[", b, "] = ", p.q_len[b], " must be >= 1 (query tokens of the step)");
        if (p.kv_len[b] < p.q_len[b])
            invalid(kKvLens, "[", b, "] = ", p.kv_len[b], " is less than the batch's ", p.q_len[b],
                    " query tokens (L_b counts them: 1 <= Q_b <= L_b)");
    }
    p.row_start = lengths_to_starts(p.q_len, kQLens, -1, "");
}

}  // namespace

Problem validate(const SelectAttentionInferArgs& args, const SelectAttentionInferParams& params) {
    Problem p;
    const Arg q{"query", &args.query}, k{"key", &args.key}, v{"value", &args.value}, topk{"topkIndices", &args.topk},
        table{kTable, &args.block_table}, o{"output", &args.out};
    for (const Arg& a : {q, k, v, topk, table, o}) check_present(a);
    p.layout = parse_layout(params.layout);
    if (!is_float_dtype(q.t->dtype))
        invalid("query: dtype ", dtype_name(q.t->dtype), " is not supported (expected fp16, bf16, fp32 or fp64)");
    p.dtype = q.t->dtype;
    for (const Arg& a : {k, v, o}) check_dtype(a, p.dtype, " (the dtype of query)");
    check_dtype(topk, DType::i32, " (block indices)");
    check_dtype(table, DType::i32, " (page indices)");
    check_rank(table, 2, " ([B, maxBlocks])");

    // Attributes.
    check_scale(params.scale, "scaleValue");
    p.scale = params.scale;
    p.N1 = params.head_num;
    p.N2 = params.key_value_head_num;
    if (p.N1 < 1) invalid("numHeads = ", p.N1, " must be >= 1");
    if (p.N2 < 1) invalid("numKeyValueHeads = ", p.N2, " must be >= 1");
    if (p.N1 % p.N2 != 0) invalid("numHeads = ", p.N1, " must be a multiple of numKeyValueHeads = ", p.N2);
    p.G = p.N1 / p.N2;
    p.sel_len = params.select_block_size;
    p.sel_count = params.select_block_count;
    if (p.sel_len < 1) invalid("selectBlockSize = ", p.sel_len, " must be >= 1");
    if (p.sel_count < 1) invalid("selectBlockCount = ", p.sel_count, " must be >= 1");
    if (params.page_block_size < 1) invalid("pageBlockSize = ", params.page_block_size, " must be >= 1");

    // Shapes.
    p.B = args.block_table.shape[0];
    p.Dk = head_dim(q, p.layout, p.N1, "numHeads");
    if (p.Dk < 1) invalid("query: head dim ", p.Dk, " must be >= 1");
    p.key = paged_cache(k, params.page_block_size, p.N2, p.Dk, "pageBlockSize");
    if (v.t->rank == 4 || v.t->rank == 3) {
        const std::int64_t width = v.t->shape[v.t->rank - 1];
        p.Dv = v.t->rank == 4 ? width : (width % p.N2 == 0 ? width / p.N2 : 0);
        if (p.Dv < 1 || p.Dv > p.Dk)
            invalid("value.shape[", v.t->rank - 1, "] = ", width, " must give a head dim Dv in [1, Dk = ", p.Dk, "]",
                    v.t->rank == 3 ? " per numKeyValueHeads head ([numBlocks, P, N2*Dv])" : "");
    }
    p.value = paged_cache(v, params.page_block_size, p.N2, p.Dv, "pageBlockSize");
    if (p.value.pages != p.key.pages)
        invalid("value.shape[0] = ", p.value.pages, " must equal key.shape[0] = ", p.key.pages, " (pages)");
    if (head_dim(o, p.layout, p.N1, "numHeads") != p.Dv)
        invalid("output: head dim ", head_dim(o, p.layout, p.N1, "numHeads"), " must equal value's Dv = ", p.Dv,
                " (shape ", shape_string(*o.t), ")");

    read_lengths(params, p);
    const bool tnd = p.layout == Layout::tnd;
    if (tnd) {
        p.Q = q.t->shape[0];
        if (p.Q != p.tokens())
            invalid("query.shape[0] = ", p.Q, " must equal the sum of ", kQLens, " = ", p.tokens(),
                    " (layout TND: the batches' query tokens, one after another)");
        p.first.assign(p.row_start.begin(), p.row_start.end() - 1);
    } else {
        check_dim(q, 0, p.B, "the batch count, blockTableOptional.shape[0]");
        p.Q = q.t->shape[1];
        const std::int64_t most = p.q_len.empty() ? 0 : *std::max_element(p.q_len.begin(), p.q_len.end());
        if (most > p.Q)
            invalid(kQLens, ": a batch has ", most, " query tokens, more than query.shape[1] = ", p.Q, " (layout ",
                    layout_name(p.layout), ")");
        p.first.assign(static_cast<std::size_t>(p.B), 0);
    }
    for (int d = 0; d < (tnd ? 1 : 2); ++d) check_dim(o, d, q.t->shape[d], "as query");

    // topk: [B, Q, N2, k], or [B, N2, k] when Q = 1 (BSND / BSH); [T, N2, k] (TND).
    const TensorView& tk = args.topk;
    if (tnd || tk.rank == 3) {
        check_rank(topk, 3, tnd ? " (layout TND: [T, N2, k])" : " ([B, N2, k] when query.shape[1] = 1, else [B, S, N2, k])");
        if (!tnd && p.Q != 1)
            invalid("topkIndices: rank 3 (shape ", shape_string(tk), ") needs query.shape[1] = 1, not ", p.Q,
                    "; give [B, S, N2, k]");
        check_dims3(topk, tnd ? p.Q : p.B, p.N2, p.sel_count, tnd ? "T of query" : "B", "numKeyValueHeads",
                    "selectBlockCount");
        p.topk = {tk.data, tnd ? 0 : tk.strides[0], tnd ? tk.strides[0] : 0, tk.strides[1], tk.strides[2]};
    } else {
        check_rank(topk, 4, " ([B, S, N2, k])");
        check_dim(topk, 0, p.B, "B");
        check_dim(topk, 1, p.Q, "S of query");
        check_dim(topk, 2, p.N2, "numKeyValueHeads");
        check_dim(topk, 3, p.sel_count, "selectBlockCount");
        p.topk = token_rows(tk, Layout::bsnd, 0);
    }
    p.table = {args.block_table};
    check_block_table_columns(p.table, kTable, p.kv_len, p.key.page_size);

    for (const Arg& a : {q, k, v, topk, table}) check_extent(a, false);
    check_extent(o, true);

    std::int64_t longest = 1;
    for (std::int64_t L : p.kv_len) longest = std::max(longest, L);
    p.block_len = std::min(p.sel_len, longest);
    if (p.sel_count > kMaxRowKeys / p.block_len)
        invalid("selectBlockCount = ", p.sel_count, " with blocks of up to ", p.block_len,
                " keys (min(selectBlockSize, longest batch)) lets a query row see more than ", kMaxRowKeys,
                " keys, the most OpenNSA takes");
    p.q = token_rows(args.query, p.layout, p.Dk);
    p.out = token_rows(args.out, p.layout, p.Dv);
    p.out_view = args.out;
    return p;
}

void check_contents(const Problem& p) {
    for (std::int64_t b = 0; b < p.B; ++b) {
        const std::int64_t blocks = p.blocks(b);
        for (std::int64_t s = 0; s < p.q_len[static_cast<std::size_t>(b)]; ++s)
            for (std::int64_t n2 = 0; n2 < p.N2; ++n2)
                for (std::int64_t j = 0; j < p.sel_count; ++j) {
                    const std::int32_t x = p.slot(b, s, n2, j);
                    if (x >= -1 && x < blocks) continue;
                    const std::string at = p.layout == Layout::tnd
                                               ? concat(p.first[static_cast<std::size_t>(b)] + s, ", ", n2, ", ", j)
                                               : concat(b, ", ", s, ", ", n2, ", ", j);
                    invalid("topkIndices[", at, "] = ", x, " is out of range [-1, ", blocks, ") for batch ", b,
                            " (", kKvLens, " = ", p.kv_len[static_cast<std::size_t>(b)], ", selectBlockSize ",
                            p.sel_len, "); -1 marks an empty slot");
                }
    }
    check_block_table(p.table, kTable, p.kv_len, p.key, "key");
}

}  // namespace opennsa::detail::select_attention_infer
