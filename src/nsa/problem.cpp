#include "nsa/problem.hpp"

#include <cmath>
#include <limits>
#include <sstream>

namespace opennsa::detail {

void fail(ErrorCode code, const std::string& message) { throw Error(code, message); }

namespace {

// A named tensor argument. Parameter names are CANN's, so messages read the same from the C API
// and the native one.
struct Arg {
    const char* name;
    const TensorView* t;
};

std::string shape_string(const TensorView& t) {
    std::ostringstream s;
    s << '[';
    for (int d = 0; d < t.rank; ++d) s << (d ? ", " : "") << t.shape[d];
    s << ']';
    return s.str();
}

template <class... Parts>
[[noreturn]] void invalid(const Parts&... parts) {
    std::ostringstream s;
    (s << ... << parts);
    fail(ErrorCode::invalid_argument, s.str());
}

bool has_zero_dim(const TensorView& t) {
    for (int d = 0; d < t.rank; ++d)
        if (t.shape[d] == 0) return true;
    return false;
}

void check_present(const Arg& a) {
    if (a.t->rank == 0) fail(ErrorCode::null_pointer, std::string(a.name) + " is required but was not given");
    if (a.t->rank < 0 || a.t->rank > kMaxRank)
        invalid(a.name, ": rank ", a.t->rank, " is outside [1, ", kMaxRank, "]");
    if (a.t->data == nullptr && !has_zero_dim(*a.t))
        fail(ErrorCode::null_pointer, std::string(a.name) + " has a null data pointer");
}

bool is_float_dtype(DType t) {
    return t == DType::f16 || t == DType::bf16 || t == DType::f32 || t == DType::f64;
}

void check_dtype(const Arg& a, DType expected, const char* why) {
    if (a.t->dtype != expected)
        invalid(a.name, ": dtype ", dtype_name(a.t->dtype), " must be ", dtype_name(expected), why);
}

void check_rank(const Arg& a, int rank, const char* why) {
    if (a.t->rank != rank)
        invalid(a.name, ": rank ", a.t->rank, " (shape ", shape_string(*a.t), ") must be ", rank, why);
    for (int d = 0; d < rank; ++d)
        if (a.t->shape[d] < 0) invalid(a.name, ".shape[", d, "] = ", a.t->shape[d], " is negative");
}

void check_dim(const Arg& a, int d, std::int64_t expected, const char* what) {
    if (a.t->shape[d] != expected)
        invalid(a.name, ".shape[", d, "] = ", a.t->shape[d], " must equal ", expected, " (", what,
                "); shape is ", shape_string(*a.t));
}

// Every element address of the view, in bytes from data, fits in int64; the element count too.
// Outputs must also not overlap themselves: each output element is written exactly once.
void check_extent(const Arg& a, bool is_output) {
    const TensorView& t = *a.t;
    const std::int64_t elt = static_cast<std::int64_t>(dtype_size(t.dtype));
    std::int64_t numel = 1, span = 0;
    for (int d = 0; d < t.rank; ++d) {
        std::int64_t reach = 0;
        const std::int64_t stride = t.strides[d];
        if (stride == std::numeric_limits<std::int64_t>::min() ||
            __builtin_mul_overflow(numel, t.shape[d], &numel) ||
            (t.shape[d] > 0 && (__builtin_mul_overflow(t.shape[d] - 1, stride < 0 ? -stride : stride, &reach) ||
                                __builtin_add_overflow(span, reach, &span))))
            invalid(a.name, ": shape ", shape_string(t), " with its strides overflows int64 addressing");
    }
    std::int64_t bytes = 0;
    if (__builtin_add_overflow(span, std::int64_t{1}, &bytes) || __builtin_mul_overflow(bytes, elt, &bytes) ||
        __builtin_mul_overflow(numel, elt, &bytes))
        invalid(a.name, ": shape ", shape_string(t), " overflows int64 byte sizes");
    if (!is_output || numel <= 1) return;

    // Non-overlap: with dimensions ordered by |stride|, each stride must step past everything the
    // smaller ones reach.
    int order[kMaxRank];
    int n = 0;
    for (int d = 0; d < t.rank; ++d)
        if (t.shape[d] > 1) order[n++] = d;
    for (int i = 1; i < n; ++i)
        for (int j = i; j > 0; --j) {
            const auto sa = t.strides[order[j - 1]], sb = t.strides[order[j]];
            if ((sa < 0 ? -sa : sa) <= (sb < 0 ? -sb : sb)) break;
            std::swap(order[j - 1], order[j]);
        }
    std::int64_t reach = 0;
    for (int i = 0; i < n; ++i) {
        const std::int64_t s = t.strides[order[i]] < 0 ? -t.strides[order[i]] : t.strides[order[i]];
        if (s <= reach)
            invalid(a.name, ": strides overlap (dimension ", order[i], " has stride ", t.strides[order[i]],
                    "); an output must address each element once");
        reach += (t.shape[order[i]] - 1) * s;
    }
}

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
    auto check = [](const char* name, const std::vector<std::int64_t>& c, std::int64_t total, const char* tname,
                    std::vector<std::int64_t>& starts) {
        starts.assign(1, 0);
        for (std::size_t b = 0; b < c.size(); ++b) {
            if (c[b] < 0) invalid(name, "[", b, "] = ", c[b], " is negative (cumulative token counts)");
            if (b > 0 && c[b] < c[b - 1])
                invalid(name, "[", b, "] = ", c[b], " is less than ", name, "[", b - 1, "] = ", c[b - 1],
                        " (cumulative token counts must be non-decreasing)");
            starts.push_back(c[b]);
        }
        if (c.back() > total)
            invalid(name, "[", c.size() - 1, "] = ", c.back(), " exceeds ", tname, " = ", total);
    };
    check("actualSeqQLenOptional", cq, T1, "T1 (query.shape[0])", out.q);
    check("actualSeqKvLenOptional", ckv, T2, "T2 (key.shape[0])", out.kv);
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
    if (!std::isfinite(p.scale)) invalid("scaleValue = ", p.scale, " must be finite");
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

void check_like(const Arg& a, std::int64_t d0, std::int64_t d1, std::int64_t d2, const char* n0, const char* n1,
                const char* n2) {
    check_dim(a, 0, d0, n0);
    check_dim(a, 1, d1, n1);
    check_dim(a, 2, d2, n2);
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
    check_like(o, pr.T1, pr.N1, pr.Dv, "T1 of query", "N1 of query", "Dv of value");
    check_like(m, pr.T1, pr.N1, 8, "T1 of query", "N1 of query", "8 copies per row");
    check_like(s, pr.T1, pr.N1, 8, "T1 of query", "N1 of query", "8 copies per row");
    check_seqlens(params, pr.T1, pr.T2, pr.batches);
    c.run_extents();
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
    check_like(o, pr.T1, pr.N1, pr.Dv, "T1 of query", "N1 of query", "Dv of value");
    check_like(dO, pr.T1, pr.N1, pr.Dv, "T1 of query", "N1 of query", "Dv of value");
    check_like(m, pr.T1, pr.N1, 8, "T1 of query", "N1 of query", "8 copies per row");
    check_like(s, pr.T1, pr.N1, 8, "T1 of query", "N1 of query", "8 copies per row");
    check_like(dq, pr.T1, pr.N1, pr.Dk, "T1 of query", "N1 of query", "Dk of query");
    check_like(dk, pr.T2, pr.N2, pr.Dk, "T2 of key", "N2 of key", "Dk of key");
    check_like(dv, pr.T2, pr.N2, pr.Dv, "T2 of value", "N2 of value", "Dv of value");
    check_seqlens(params, pr.T1, pr.T2, pr.batches);
    c.run_extents();
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
    for (std::int64_t batch = 0; batch < b.count(); ++batch) {
        const std::int64_t blocks = b.block_count(batch, p.bs);
        for (std::int64_t t = b.q[batch]; t < b.q[batch + 1]; ++t)
            for (std::int64_t n = 0; n < p.N2; ++n)
                for (std::int64_t j = 0; j < p.C; ++j) {
                    const std::int32_t x = *element<const std::int32_t>(p.topk, t, n, j);
                    if (x == -1 || (x >= 0 && x < blocks)) continue;
                    invalid("topkIndices[", t, ", ", n, ", ", j, "] = ", x, " is out of range [0, ", blocks,
                            ") for batch ", batch, " (S2 = ", b.key_count(batch), ", block size ", p.bs,
                            "); -1 marks an empty slot");
                }
    }
}

}  // namespace opennsa::detail
