#include "ops/compress_attention/problem.hpp"

#include <limits>

#include "core/validate.hpp"

namespace opennsa::detail::compress_attention {
namespace {

constexpr const char* kMask = "attenMaskOptional";
constexpr const char* kTopkMask = "topkMaskOptional";

void check_seqlens(const CompressAttentionParams& p, std::int64_t T1, std::int64_t T2, Batches& out) {
    const bool has_q = p.cu_seqlens_q.has_value(), has_kv = p.cu_seqlens_cmp_kv.has_value();
    if (has_q != has_kv)
        invalid(has_q ? "actualCmpSeqKvLenOptional" : "actualSeqQLenOptional", " is absent while ",
                has_q ? "actualSeqQLenOptional" : "actualCmpSeqKvLenOptional", " is given: give both or neither");
    if (!has_q) {
        out.q = {0, T1};
        out.kv = {0, T2};
        return;
    }
    const auto& cq = *p.cu_seqlens_q;
    const auto& ckv = *p.cu_seqlens_cmp_kv;
    if (cq.empty()) invalid("actualSeqQLenOptional: length 0, must hold at least one batch");
    if (ckv.size() != cq.size())
        invalid("actualCmpSeqKvLenOptional: length ", ckv.size(), " must equal actualSeqQLenOptional's length ",
                cq.size());
    out.q = cumulative_starts(cq, "actualSeqQLenOptional", T1, "T1 (query.shape[0])");
    out.kv = cumulative_starts(ckv, "actualCmpSeqKvLenOptional", T2, "T2 (key.shape[0])");
    // actualSelSeqKvLenOptional: accepted and never read, as in CANN.
}

// A 2-D bool / uint8 mask, when given.
void check_mask_type(const TensorView& mask, const char* name) {
    if (mask.rank == 0) return;  // optional
    const Arg a{name, &mask};
    if (mask.dtype != DType::boolean && mask.dtype != DType::u8)
        invalid(name, ": dtype ", dtype_name(mask.dtype), " must be bool or uint8");
    check_rank(a, 2, " (a 2-D mask shared by all batches and heads)");
    if (mask.data == nullptr && mask.numel() > 0) invalid(name, " has a null data pointer");
    check_extent(a, false);
}

// The mask is indexed [position in the query batch][column]; it must reach every (row, column)
// some batch can ask for.
void check_mask_cover(const TensorView& mask, const char* name, std::int64_t rows, std::int64_t cols,
                      const char* cols_name, const char* column_meaning) {
    if (mask.shape[0] < rows || mask.shape[1] < cols)
        invalid(name, ": shape ", shape_string(mask), " does not cover [maxS1, ", cols_name, "] = [", rows, ", ", cols,
                "] (row = query position, column = ", column_meaning, " of each batch)");
}

// The attributes; the ones that depend on no tensor first.
void check_params(const CompressAttentionParams& p, Problem& pr) {
    check_scale(p.scale, "scaleValue");
    if (p.sparse_mode != 0 && p.sparse_mode != kCompressSparseModeMask && p.sparse_mode != kCompressSparseModeCausal)
        invalid("sparseMode = ", p.sparse_mode,
                " is not supported (expected 0 or 1: attenMaskOptional applied when given, or 2: the built-in NSA "
                "causal rule)");
    check_selection_attributes(p.compress_block_size, p.compress_stride, p.select_block_size, p.select_block_count,
                               "compressStride");
    pr.scale = p.scale;
    pr.l = p.compress_block_size;
    pr.d = p.compress_stride;
    pr.sel_len = p.select_block_size;
    pr.sel_count = p.select_block_count;
    pr.m = pr.sel_len / pr.d;
    pr.n = pr.l / pr.d;
    pr.causal = p.sparse_mode == kCompressSparseModeCausal;
    pr.stats_token_major = p.stats_token_major;
}

// query [T1, N1, Dk], key [T2, N2, Dk], value [T2, N2, Dv] (present, typed, rank 3).
void read_core_shapes(Problem& pr, const CompressAttentionParams& params, const Arg& q, const Arg& k, const Arg& v) {
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
    if (pr.Dv > pr.Dk)
        invalid("value.shape[2] = ", pr.Dv, " (Dv) must be <= query.shape[2] = ", pr.Dk, " (Dk)");
    if (params.head_num != pr.N1) invalid("headNum = ", params.head_num, " must equal query.shape[1] = ", pr.N1, " (N1)");
    if (pr.N1 % pr.N2 != 0)
        invalid("query.shape[1] = ", pr.N1, " (N1) must be a multiple of key.shape[1] = ", pr.N2, " (N2)");
    pr.G = pr.N1 / pr.N2;
}

void set_batch_extremes(Problem& pr) {
    for (std::int64_t b = 0; b < pr.batches.count(); ++b) {
        pr.max_s1 = std::max(pr.max_s1, pr.batches.query_count(b));
        pr.max_c = std::max(pr.max_c, pr.batches.key_count(b));
    }
    pr.max_ns = ceil_div(pr.max_c, pr.m);
    // topkIndicesOut is int32: every block index of a batch must fit.
    if (pr.max_ns > std::numeric_limits<std::int32_t>::max())
        invalid("actualCmpSeqKvLenOptional: a batch of ", pr.max_c, " compressed tokens has ", pr.max_ns,
                " selection blocks of ", pr.m, " tokens; topkIndicesOut (int32) holds block indices below 2^31");
}

// The masks' rules once the batches are known: attenMask covers [maxS1, maxC] when it is read,
// topkMask covers [maxS1, maxNS] (always read when given).
void check_masks(Problem& pr, const TensorView& mask, const TensorView* topk_mask) {
    if (mask.rank != 0 && !pr.causal) {
        check_mask_cover(mask, kMask, pr.max_s1, pr.max_c, "maxC", "compressed position");
        pr.use_mask = true;
        pr.atten_mask = mask;
    }
    if (topk_mask != nullptr && topk_mask->rank != 0) {
        check_mask_cover(*topk_mask, kTopkMask, pr.max_s1, pr.max_ns, "maxNS", "selection block");
        pr.use_topk_mask = true;
        pr.topk_mask = *topk_mask;
    }
}

struct Checker {
    std::vector<Arg> inputs, outputs;

    void run_structural(DType& dtype, const std::vector<Arg>& same_dtype, const std::vector<Arg>& stats) {
        for (const Arg& a : inputs) check_present(a);
        for (const Arg& a : outputs) check_present(a);
        const Arg& q = same_dtype.front();
        if (!is_float_dtype(q.t->dtype))
            invalid("query: dtype ", dtype_name(q.t->dtype), " is not supported (expected fp16, bf16, fp32 or fp64)");
        dtype = q.t->dtype;
        for (const Arg& a : same_dtype) check_dtype(a, dtype, " (the dtype of query)");
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

void check_selection_attributes(std::int64_t l, std::int64_t d, std::int64_t sel, std::int64_t k,
                                const char* stride_name) {
    if (d < 1) invalid(stride_name, " = ", d, " must be >= 1");
    if (l < d) invalid("compressBlockSize = ", l, " must be >= ", stride_name, " = ", d, " (d <= l)");
    if (sel < l) invalid("selectBlockSize = ", sel, " must be >= compressBlockSize = ", l, " (l <= l')");
    if (sel % d != 0) invalid("selectBlockSize = ", sel, " must be a multiple of ", stride_name, " = ", d);
    if (k < 1) invalid("selectBlockCount = ", k, " must be >= 1");
}

Problem validate_forward(const CompressAttentionArgs& args, const CompressAttentionParams& params) {
    Problem pr;
    const Arg q{"query", &args.query}, k{"key", &args.key}, v{"value", &args.value},
        o{"attentionOutOut", &args.out}, topk{"topkIndicesOut", &args.topk}, mx{"softmaxMaxOut", &args.softmax_max},
        sm{"softmaxSumOut", &args.softmax_sum};
    Checker c{{q, k, v}, {mx, sm, o, topk}};
    c.run_structural(pr.dtype, {q, k, v, o}, {mx, sm});
    check_dtype(topk, DType::i32, " (block indices)");
    check_mask_type(args.atten_mask, kMask);
    check_mask_type(args.topk_mask, kTopkMask);
    check_params(params, pr);
    read_core_shapes(pr, params, q, k, v);
    check_dims3(o, pr.T1, pr.N1, pr.Dv, "T1 of query", "N1 of query", "Dv of value");
    check_dims3(topk, pr.T1, pr.N2, pr.sel_count, "T1 of query", "N2 of key", "selectBlockCount");
    check_dims3(mx, pr.T1, pr.N1, 8, "T1 of query", "N1 of query", "8 copies per row");
    check_dims3(sm, pr.T1, pr.N1, 8, "T1 of query", "N1 of query", "8 copies per row");
    check_seqlens(params, pr.T1, pr.T2, pr.batches);
    c.run_extents();
    set_batch_extremes(pr);
    check_masks(pr, args.atten_mask, &args.topk_mask);
    pr.q = args.query;
    pr.k = args.key;
    pr.v = args.value;
    pr.out = args.out;
    pr.topk = args.topk;
    pr.softmax_max = args.softmax_max;
    pr.softmax_sum = args.softmax_sum;
    return pr;
}

Problem validate_backward(const CompressAttentionGradArgs& args, const CompressAttentionParams& params) {
    Problem pr;
    pr.is_backward = true;
    const Arg q{"query", &args.query}, k{"key", &args.key}, v{"value", &args.value}, o{"attentionOut", &args.out},
        dO{"attentionOutGrad", &args.out_grad}, mx{"softmaxMax", &args.softmax_max},
        sm{"softmaxSum", &args.softmax_sum}, dq{"dqOut", &args.query_grad}, dk{"dkOut", &args.key_grad},
        dv{"dvOut", &args.value_grad};
    Checker c{{q, k, v, o, dO, mx, sm}, {dq, dk, dv}};
    c.run_structural(pr.dtype, {q, k, v, o, dO, dq, dk, dv}, {mx, sm});
    check_mask_type(args.atten_mask, kMask);
    check_params(params, pr);
    read_core_shapes(pr, params, q, k, v);
    check_dims3(o, pr.T1, pr.N1, pr.Dv, "T1 of query", "N1 of query", "Dv of value");
    check_dims3(dO, pr.T1, pr.N1, pr.Dv, "T1 of query", "N1 of query", "Dv of value");
    check_dims3(mx, pr.T1, pr.N1, 8, "T1 of query", "N1 of query", "8 copies per row");
    check_dims3(sm, pr.T1, pr.N1, 8, "T1 of query", "N1 of query", "8 copies per row");
    check_dims3(dq, pr.T1, pr.N1, pr.Dk, "T1 of query", "N1 of query", "Dk of query");
    check_dims3(dk, pr.T2, pr.N2, pr.Dk, "T2 of key", "N2 of key", "Dk of key");
    check_dims3(dv, pr.T2, pr.N2, pr.Dv, "T2 of value", "N2 of value", "Dv of value");
    check_seqlens(params, pr.T1, pr.T2, pr.batches);
    c.run_extents();
    set_batch_extremes(pr);
    check_masks(pr, args.atten_mask, nullptr);
    pr.q = args.query;
    pr.k = args.key;
    pr.v = args.value;
    pr.out = args.out;
    pr.out_grad = args.out_grad;
    pr.softmax_max = args.softmax_max;
    pr.softmax_sum = args.softmax_sum;
    pr.dq = args.query_grad;
    pr.dk = args.key_grad;
    pr.dv = args.value_grad;
    return pr;
}

}  // namespace opennsa::detail::compress_attention
