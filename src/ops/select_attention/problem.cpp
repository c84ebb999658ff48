#include "ops/select_attention/problem.hpp"

#include <algorithm>

#include "core/validate.hpp"

namespace opennsa::detail::select_attention {
namespace {

void check_seqlens(const Params& p, std::int64_t T1, std::int64_t T2, Batches& out) {
    const bool has_q = p.cu_seqlens_q.has_value(), has_kv = p.cu_seqlens_kv.has_value();
    if (has_q != has_kv)
        invalid(has_q ? "actualSeqKvLenOptional" : "actualSeqQLenOptional",
                " is absent while ", has_q ? "actualSeqQLenOptional" : "actualSeqKvLenOptional",
                " is given: give both or neither");
    if (!has_q) {
        out.q = {0, T1};
        out.kv = {0, T2};
        return;
    }
    const auto& cq = *p.cu_seqlens_q;
    const auto& ckv = *p.cu_seqlens_kv;
    if (cq.empty()) invalid("actualSeqQLenOptional: length 0, must hold at least one batch");
    if (ckv.size() != cq.size())
        invalid("actualSeqKvLenOptional: length ", ckv.size(), " must equal actualSeqQLenOptional's length ",
                cq.size());
    out.q = cumulative_starts(cq, "actualSeqQLenOptional", T1, "T1 (query.shape[0])");
    out.kv = cumulative_starts(ckv, "actualSeqKvLenOptional", T2, "T2 (key.shape[0])");
}

void check_mask(const TensorView& mask) {
    if (mask.rank == 0) return;  // optional
    const Arg a{"attenMaskOptional", &mask};
    if (mask.dtype != DType::boolean && mask.dtype != DType::u8)
        invalid("attenMaskOptional: dtype ", dtype_name(mask.dtype), " must be bool or uint8");
    check_rank(a, 2, " (a 2-D mask)");
}

// The shape-independent rules shared by both directions.
void check_params(const Params& p, Problem& pr) {
    check_scale(p.scale, "scaleValue");
    if (p.head_num != pr.N1) invalid("headNum = ", p.head_num, " must equal query.shape[1] = ", pr.N1, " (N1)");
    if (p.block_size < 1) invalid("selectedBlockSize = ", p.block_size, " must be >= 1");
    if (p.block_count < 1) invalid("selectedBlockCount = ", p.block_count, " must be >= 1");
    if (p.sparse_mode != kSparseModeNone && p.sparse_mode != kSparseModeCausal)
        invalid("sparseMode = ", p.sparse_mode, " is not supported (expected 0: no mask, or 2: causal)");
    pr.scale = p.scale;
    pr.bs = p.block_size;
    pr.C = p.block_count;
    pr.causal = p.sparse_mode == kSparseModeCausal;
}

// Reads q, k, v, topk (present, typed and rank-3 already) into the problem's sizes.
void read_core_shapes(Problem& pr, const Params& params, const Arg& q, const Arg& k, const Arg& v,
                      const Arg& topk) {
    pr.T1 = q.t->shape[0];
    pr.N1 = q.t->shape[1];
    pr.Dk = q.t->shape[2];
    pr.T2 = k.t->shape[0];
    pr.N2 = k.t->shape[1];
    if (pr.N1 < 1) invalid("query.shape[1] = ", pr.N1, " (N1) must be >= 1");
    if (pr.Dk < 1) invalid("query.shape[2] = ", pr.Dk, " (Dk) must be >= 1");
    if (pr.N2 < 1) invalid("key.shape[1] = ", pr.N2, " (N2) must be >= 1");
    check_dim(k, 2, pr.Dk, "Dk of query");
    check_dim(v, 0, pr.T2, "T2 of key");
    check_dim(v, 1, pr.N2, "N2 of key");
    pr.Dv = v.t->shape[2];
    if (pr.Dv < 1) invalid("value.shape[2] = ", pr.Dv, " (Dv) must be >= 1");
    check_params(params, pr);
    if (pr.N1 % pr.N2 != 0)
        invalid("query.shape[1] = ", pr.N1, " (N1) must be a multiple of key.shape[1] = ", pr.N2, " (N2)");
    pr.G = pr.N1 / pr.N2;
    check_dim(topk, 0, pr.T1, "T1 of query");
    check_dim(topk, 1, pr.N2, "N2 of key");
    check_dim(topk, 2, pr.C, "selectedBlockCount");
}

// The longest batch's key count bounds what a block can hold. A row's scores are kept whole (C
// slots of up to block_len keys): the library takes at most kMaxRowKeys of them, far above any
// real selection, so that a huge count (e.g. a broadcast topk with C = 2^31) is a clear error
// rather than tens of GB of scratch.
void set_block_len(Problem& pr) {
    std::int64_t longest = 1;
    for (std::int64_t b = 0; b < pr.batches.count(); ++b) longest = std::max(longest, pr.batches.key_count(b));
    pr.block_len = std::min(pr.bs, longest);
    if (pr.C > kMaxRowKeys / pr.block_len)
        invalid("selectedBlockCount = ", pr.C, " with blocks of up to ", pr.block_len,
                " keys (min(selectedBlockSize, longest batch)) lets a query row see more than ", kMaxRowKeys,
                " keys, the most OpenNSA takes");
}

struct Checker {
    std::vector<Arg> inputs, outputs;

    void run_structural(DType& dtype, const std::vector<Arg>& same_dtype, const Arg& topk,
                        const std::vector<Arg>& stats) {
        for (const Arg& a : inputs) check_present(a);
        for (const Arg& a : outputs) check_present(a);
        const Arg& q = same_dtype.front();
        if (!is_float_dtype(q.t->dtype))
            invalid("query: dtype ", dtype_name(q.t->dtype), " is not supported (expected fp16, bf16, fp32 or fp64)");
        dtype = q.t->dtype;
        for (const Arg& a : same_dtype) check_dtype(a, dtype, " (the dtype of query)");
        check_dtype(topk, DType::i32, " (block indices)");
        for (const Arg& a : stats) check_dtype(a, DType::f32, " (softmax statistics)");
        for (const Arg& a : inputs) check_rank(a, 3, " (layout TND)");
        for (const Arg& a : outputs) check_rank(a, 3, " (layout TND)");
    }

    void run_extents() {
        for (const Arg& a : inputs) check_extent(a, false);
        for (const Arg& a : outputs) check_extent(a, true);
    }
};

}  // namespace

Problem validate_forward(const ForwardArgs& args, const Params& params) {
    Problem pr;
    const Arg q{"query", &args.query}, k{"key", &args.key}, v{"value", &args.value},
        topk{"topkIndices", &args.topk}, o{"attentionOut", &args.out}, m{"softmaxMaxOut", &args.softmax_max},
        s{"softmaxSumOut", &args.softmax_sum};
    Checker c{{q, k, v, topk}, {m, s, o}};
    c.run_structural(pr.dtype, {q, k, v, o}, topk, {m, s});
    check_mask(args.atten_mask);
    read_core_shapes(pr, params, q, k, v, topk);
    check_dims3(o, pr.T1, pr.N1, pr.Dv, "T1 of query", "N1 of query", "Dv of value");
    check_dims3(m, pr.T1, pr.N1, 8, "T1 of query", "N1 of query", "8 copies per row");
    check_dims3(s, pr.T1, pr.N1, 8, "T1 of query", "N1 of query", "8 copies per row");
    check_seqlens(params, pr.T1, pr.T2, pr.batches);
    c.run_extents();
    set_block_len(pr);
    pr.q = args.query;
    pr.k = args.key;
    pr.v = args.value;
    pr.topk = args.topk;
    pr.out = args.out;
    pr.softmax_max = args.softmax_max;
    pr.softmax_sum = args.softmax_sum;
    return pr;
}

Problem validate_backward(const BackwardArgs& args, const Params& params) {
    Problem pr;
    pr.is_backward = true;
    const Arg q{"query", &args.query}, k{"key", &args.key}, v{"value", &args.value},
        o{"attentionOut", &args.out}, dO{"attentionOutGrad", &args.out_grad}, m{"softmaxMax", &args.softmax_max},
        s{"softmaxSum", &args.softmax_sum}, topk{"topkIndices", &args.topk}, dq{"dqOut", &args.query_grad},
        dk{"dkOut", &args.key_grad}, dv{"dvOut", &args.value_grad};
    Checker c{{q, k, v, o, dO, m, s, topk}, {dq, dk, dv}};
    c.run_structural(pr.dtype, {q, k, v, o, dO, dq, dk, dv}, topk, {m, s});
    check_mask(args.atten_mask);
    read_core_shapes(pr, params, q, k, v, topk);
    check_dims3(o, pr.T1, pr.N1, pr.Dv, "T1 of query", "N1 of query", "Dv of value");
    check_dims3(dO, pr.T1, pr.N1, pr.Dv, "T1 of query", "N1 of query", "Dv of value");
    check_dims3(m, pr.T1, pr.N1, 8, "T1 of query", "N1 of query", "8 copies per row");
    check_dims3(s, pr.T1, pr.N1, 8, "T1 of query", "N1 of query", "8 copies per row");
    check_dims3(dq, pr.T1, pr.N1, pr.Dk, "T1 of query", "N1 of query", "Dk of query");
    check_dims3(dk, pr.T2, pr.N2, pr.Dk, "T2 of key", "N2 of key", "Dk of key");
    check_dims3(dv, pr.T2, pr.N2, pr.Dv, "T2 of value", "N2 of value", "Dv of value");
    check_seqlens(params, pr.T1, pr.T2, pr.batches);
    c.run_extents();
    set_block_len(pr);
    pr.q = args.query;
    pr.k = args.key;
    pr.v = args.value;
    pr.out = args.out;
    pr.out_grad = args.out_grad;
    pr.softmax_max = args.softmax_max;
    pr.softmax_sum = args.softmax_sum;
    pr.topk = args.topk;
    pr.dq = args.query_grad;
    pr.dk = args.key_grad;
    pr.dv = args.value_grad;
    return pr;
}

void check_topk_values(const Problem& p) {
    const Batches& b = p.batches;
    // A dimension with stride 0 repeats one element: read it once. Along T that means every batch
    // reads the same row, so it is checked once against the fewest blocks of any batch that has
    // query rows.
    const TensorView& tk = p.topk;
    const std::int64_t n_end = tk.strides[1] == 0 ? std::min<std::int64_t>(p.N2, 1) : p.N2;
    const std::int64_t j_end = tk.strides[2] == 0 ? std::min<std::int64_t>(p.C, 1) : p.C;
    auto check_row = [&](std::int64_t t, std::int64_t batch, std::int64_t blocks) {
        for (std::int64_t n = 0; n < n_end; ++n)
            for (std::int64_t j = 0; j < j_end; ++j) {
                const std::int32_t x = *element<const std::int32_t>(tk, t, n, j);
                if (x == -1 || (x >= 0 && x < blocks)) continue;
                invalid("topkIndices[", t, ", ", n, ", ", j, "] = ", x, " is out of range [0, ", blocks, ") for batch ",
                        batch, " (S2 = ", b.key_count(batch), ", block size ", p.bs, "); -1 marks an empty slot");
            }
    };
    if (tk.strides[0] == 0) {
        std::int64_t tightest = -1;
        for (std::int64_t batch = 0; batch < b.count(); ++batch)
            if (b.q[batch + 1] > b.q[batch] && (tightest < 0 || b.block_count(batch, p.bs) < b.block_count(tightest, p.bs)))
                tightest = batch;
        if (tightest >= 0) check_row(b.q[tightest], tightest, b.block_count(tightest, p.bs));
        return;
    }
    for (std::int64_t batch = 0; batch < b.count(); ++batch) {
        const std::int64_t blocks = b.block_count(batch, p.bs);
        for (std::int64_t t = b.q[batch]; t < b.q[batch + 1]; ++t) check_row(t, batch, blocks);
    }
}

}  // namespace opennsa::detail::select_attention
