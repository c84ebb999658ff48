#include "ops/compress_attention_infer/problem.hpp"

#include <limits>
#include <string>

#include "core/validate.hpp"
#include "ops/compress_attention/problem.hpp"

namespace opennsa::detail::compress_attention_infer {
namespace {

constexpr const char* kQLens = "actualQSeqLenOptional";
constexpr const char* kCmpLens = "actualCmpKvSeqLenOptional";
constexpr const char* kSelLens = "actualSelKvSeqLenOptional";
constexpr const char* kTable = "blockTableOptional";
constexpr const char* kMask = "attentionMaskOptional";

// The attributes that depend on no tensor.
void check_params(const CompressAttentionInferParams& p, Problem& pr) {
    if (p.layout != "TND" && p.layout != "BSND")
        invalid("layoutOptional = \"", p.layout, "\" is not supported (expected \"TND\" or \"BSND\")");
    pr.bsnd = p.layout == "BSND";
    check_scale(p.scale, "scaleValue");
    if (p.head_num < 1) invalid("numHeads = ", p.head_num, " must be >= 1");
    if (p.key_value_head_num < 1) invalid("numKeyValueHeads = ", p.key_value_head_num, " must be >= 1");
    if (p.head_num % p.key_value_head_num != 0)
        invalid("numHeads = ", p.head_num, " must be a multiple of numKeyValueHeads = ", p.key_value_head_num);
    compress_attention::check_selection_attributes(p.compress_block_size, p.compress_stride, p.select_block_size,
                                                   p.select_block_count, "compressBlockStride");
    if (p.page_block_size < 1) invalid("pageBlockSize = ", p.page_block_size, " must be >= 1");
    pr.scale = p.scale;
    pr.N1 = p.head_num;
    pr.N2 = p.key_value_head_num;
    pr.G = pr.N1 / pr.N2;
    pr.l = p.compress_block_size;
    pr.d = p.compress_stride;
    pr.sel_len = p.select_block_size;
    pr.sel_count = p.select_block_count;
    pr.m = pr.sel_len / pr.d;
    pr.n = pr.l / pr.d;
}

// A per-batch length array of B entries, each >= lo.
std::vector<std::int64_t> check_lengths(const std::vector<std::int64_t>& v, const char* name, std::int64_t B,
                                        std::int64_t lo, const char* why) {
    if (static_cast<std::int64_t>(v.size()) != B)
        invalid(name, ": length ", v.size(), " must equal the batch count B = ", B, " (blockTableOptional.shape[0])");
    for (std::size_t b = 0; b < v.size(); ++b)
        if (v[b] < lo) invalid(name, "[", b, "] = ", v[b], " must be >= ", lo, why);
    return v;
}

// The lengths, once B is known; the query rows per batch (TND) and the extremes.
void read_lengths(const CompressAttentionInferParams& p, Problem& pr) {
    if (!p.cmp_kv_seq_lens)
        fail(ErrorCode::null_pointer,
             std::string(kCmpLens) + " is required but was not given (the compressed length of each batch)");
    pr.c_len = check_lengths(*p.cmp_kv_seq_lens, kCmpLens, pr.B, 0, " (compressed tokens per batch)");
    pr.q_len = p.q_seq_lens ? check_lengths(*p.q_seq_lens, kQLens, pr.B, 1, " (query tokens per batch)")
                            : std::vector<std::int64_t>(static_cast<std::size_t>(pr.B), 1);
    if (p.sel_kv_seq_lens) pr.raw_len = check_lengths(*p.sel_kv_seq_lens, kSelLens, pr.B, 0, " (raw tokens per batch)");
    pr.q_start = lengths_to_starts(pr.q_len, kQLens, -1, "");
    for (std::int64_t b = 0; b < pr.B; ++b) {
        const std::size_t x = static_cast<std::size_t>(b);
        pr.max_q = std::max(pr.max_q, pr.q_len[x]);
        pr.max_c = std::max(pr.max_c, pr.c_len[x]);
        if (pr.c_len[x] > 0) {
            // NS_b = ceil(((C_b - 1)*d + l) / l') must be representable and fit topK's int32.
            const std::int64_t span = checked_add(checked_product({pr.c_len[x] - 1, pr.d}, kCmpLens), pr.l, kCmpLens);
            pr.max_ns = std::max(pr.max_ns, ceil_div(span, pr.sel_len));
        }
    }
    if (pr.max_ns > std::numeric_limits<std::int32_t>::max())
        invalid(kCmpLens, ": a batch of ", pr.max_c, " compressed tokens spans ", pr.max_ns,
                " selection blocks; topKOutput (int32) holds block indices below 2^31");
}

// The multi-token rule needs every draft token's raw position L_b - Q_b + s >= 0.
void check_multi_token(Problem& pr) {
    if (!pr.multi_token) return;
    if (pr.raw_len.empty()) {
        for (std::int64_t b = 0; b < pr.B; ++b)
            if (pr.q_len[static_cast<std::size_t>(b)] > 1)
                invalid(kSelLens, " is absent while ", kMask, " is given and batch ", b, " has ",
                        pr.q_len[static_cast<std::size_t>(b)],
                        " query tokens: the multi-token rule needs the raw lengths");
        return;
    }
    for (std::int64_t b = 0; b < pr.B; ++b) {
        const std::size_t x = static_cast<std::size_t>(b);
        if (pr.raw_len[x] < pr.q_len[x])
            invalid(kSelLens, "[", b, "] = ", pr.raw_len[x], " must be >= ", kQLens, "[", b, "] = ", pr.q_len[x],
                    " (the query tokens are the last tokens of the sequence)");
    }
}

}  // namespace

Problem validate(const CompressAttentionInferArgs& args, const CompressAttentionInferParams& params) {
    Problem pr;
    const Arg q{"query", &args.query}, k{"key", &args.key}, v{"value", &args.value}, o{"output", &args.out},
        topk{"topKOutput", &args.topk}, table{kTable, &args.block_table};
    for (const Arg& a : {q, k, v, table, o, topk}) check_present(a);
    if (!params.cmp_kv_seq_lens)
        fail(ErrorCode::null_pointer,
             std::string(kCmpLens) + " is required but was not given (the compressed length of each batch)");
    check_params(params, pr);
    if (!is_float_dtype(args.query.dtype))
        invalid("query: dtype ", dtype_name(args.query.dtype), " is not supported (expected fp16, bf16, fp32 or fp64)");
    pr.dtype = args.query.dtype;
    for (const Arg& a : {k, v, o}) check_dtype(a, pr.dtype, " (the dtype of query)");
    check_dtype(table, DType::i32, " (page indices)");
    check_dtype(topk, DType::i32, " (block indices)");
    if (args.atten_mask.rank != 0) {
        // Present: its contents are never read, only its kind is checked.
        if (args.atten_mask.dtype != DType::boolean && args.atten_mask.dtype != DType::u8)
            invalid(kMask, ": dtype ", dtype_name(args.atten_mask.dtype), " must be bool or uint8");
        pr.multi_token = true;
    }
    const int rank = pr.bsnd ? 4 : 3;
    const char* why = pr.bsnd ? " (layout BSND)" : " (layout TND)";
    check_rank(q, rank, why);
    check_rank(o, rank, why);
    check_rank(topk, rank, why);
    check_rank(table, 2, " ([B, maxBlocks])");
    pr.B = args.block_table.shape[0];
    const int h = rank - 2;  // the head dimension of query / output / topk
    if (args.query.shape[h] != pr.N1)
        invalid("query.shape[", h, "] = ", args.query.shape[h], " must equal numHeads = ", pr.N1);
    pr.Dk = args.query.shape[h + 1];
    if (pr.Dk < 1) invalid("query.shape[", h + 1, "] = ", pr.Dk, " (Dk) must be >= 1");
    pr.key = paged_cache(k, params.page_block_size, pr.N2, pr.Dk, "pageBlockSize");
    // Dv: the value row holds N2 heads.
    if (args.value.rank == 3) {
        if (args.value.shape[2] < 1 || args.value.shape[2] % pr.N2 != 0)
            invalid("value.shape[2] = ", args.value.shape[2], " must be numKeyValueHeads = ", pr.N2,
                    " x Dv with Dv >= 1");
        pr.Dv = args.value.shape[2] / pr.N2;
    } else if (args.value.rank == 4) {
        pr.Dv = args.value.shape[3];
        if (pr.Dv < 1) invalid("value.shape[3] = ", pr.Dv, " (Dv) must be >= 1");
    }
    pr.value = paged_cache(v, params.page_block_size, pr.N2, std::max<std::int64_t>(pr.Dv, 1), "pageBlockSize");
    if (pr.Dv > pr.Dk) invalid("value: Dv = ", pr.Dv, " must be <= Dk = ", pr.Dk, " (the query's head dim)");
    if (pr.value.pages != pr.key.pages)
        invalid("value.shape[0] = ", pr.value.pages, " must equal key.shape[0] = ", pr.key.pages, " (numBlocks)");

    read_lengths(params, pr);
    check_multi_token(pr);
    if (pr.bsnd) {
        if (args.query.shape[0] != pr.B)
            invalid("query.shape[0] = ", args.query.shape[0], " must equal the batch count B = ", pr.B,
                    " (blockTableOptional.shape[0])");
        pr.Q = args.query.shape[1];
        if (pr.Q < pr.max_q)
            invalid("query.shape[1] = ", pr.Q, " must be >= the longest query length ", pr.max_q, " (", kQLens, ")");
        pr.rows = checked_product({pr.B, pr.Q}, "query rows");
    } else {
        pr.rows = args.query.shape[0];
        if (pr.rows != pr.q_start.back())
            invalid("query.shape[0] = ", pr.rows, " must equal the sum of the query lengths ", pr.q_start.back(), " (",
                    kQLens, "; 1 per batch when absent)");
    }
    for (int x = 0; x < h; ++x) {
        check_dim(o, x, args.query.shape[x], "the query's dimension");
        check_dim(topk, x, args.query.shape[x], "the query's dimension");
    }
    check_dim(o, h, pr.N1, "numHeads");
    check_dim(o, h + 1, pr.Dv, "Dv of value");
    check_dim(topk, h, pr.N2, "numKeyValueHeads");
    check_dim(topk, h + 1, pr.sel_count, "selectBlockCount");
    pr.table = BlockTable{args.block_table};
    // The table needs a column for every page of the compressed tokens (its entries: at the launch).
    for (std::int64_t b = 0; b < pr.B; ++b) {
        const std::int64_t used = ceil_div(pr.c_len[static_cast<std::size_t>(b)], params.page_block_size);
        if (used > args.block_table.shape[1])
            invalid(kTable, ": batch ", b, " holds ", pr.c_len[static_cast<std::size_t>(b)], " compressed tokens, ", used,
                    " pages of ", params.page_block_size, ", but the table has ", args.block_table.shape[1], " columns");
    }
    for (const Arg& a : {q, k, v, table}) check_extent(a, false);
    for (const Arg& a : {o, topk}) check_extent(a, true);
    pr.q = args.query;
    pr.out = args.out;
    pr.topk = args.topk;
    return pr;
}

void check_block_table_entries(const Problem& p) {
    check_block_table(p.table, kTable, p.c_len, p.key, "key and value");
}

}  // namespace opennsa::detail::compress_attention_infer
