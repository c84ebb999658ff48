#include "ops/compress/problem.hpp"

#include "core/checked.hpp"
#include "core/validate.hpp"

namespace opennsa::detail::compress {
namespace {

constexpr const char* kTcRule = "Tc, the sum over the batches of actSeqLenOptional of C(S_b)";

// The first tensor of `same` fixes the dtype of the call: a float dtype, shared by all.
DType check_dtypes(std::initializer_list<Arg> same) {
    const Arg& first = *same.begin();
    const DType t = first.t->dtype;
    if (!is_float_dtype(t))
        invalid(first.name, ": dtype ", dtype_name(t), " is not supported (expected fp16, bf16, fp32 or fp64)");
    const std::string why = std::string(" (the dtype of ") + first.name + ")";
    for (const Arg& a : same) check_dtype(a, t, why.c_str());
    return t;
}

// Ranks, then N and D from input (both >= 1, as CANN requires), then the batches.
void read_shapes(Problem& pr, const Arg& input, const Arg& weight, const CompressParams& params) {
    check_rank(input, 3, " (layout TND: [T, N, D])");
    check_rank(weight, 2, " ([compressBlockSize, N])");
    pr.T = input.t->shape[0];
    pr.N = input.t->shape[1];
    pr.D = input.t->shape[2];
    if (pr.N < 1) invalid("input.shape[1] = ", pr.N, " (N, the heads) must be >= 1");
    if (pr.D < 1) invalid("input.shape[2] = ", pr.D, " (D, the head dim) must be >= 1");
    pr.batches = make_batches(pr.T, params);
    pr.l = params.block_size;
    pr.d = params.stride;
    pr.Tc = pr.batches.total_compressed();
    check_dim(weight, 0, pr.l, "compressBlockSize");
    check_dim(weight, 1, pr.N, "N of input");
}

}  // namespace

Batches make_batches(std::int64_t T, const CompressParams& params) {
    if (T < 0) invalid("input.shape[0] = ", T, " (T) must be >= 0");
    const std::int64_t l = params.block_size, d = params.stride;
    if (d < 1) invalid("compressStride = ", d, " must be >= 1");
    if (l < d)
        invalid("compressBlockSize = ", l, " must be >= compressStride = ", d,
                " (windows may overlap but must cover every stride)");
    if (params.seq_len_type != kSeqLenCumulative && params.seq_len_type != kSeqLenPerBatch)
        invalid("actSeqLenType = ", params.seq_len_type,
                " is not supported (expected 0: cumulative ends, or 1: per-batch lengths)");
    if (params.seq_lens.empty()) invalid("actSeqLenOptional: length 0, must hold at least one batch");
    Batches b;
    b.in = params.seq_len_type == kSeqLenCumulative
               ? cumulative_starts(params.seq_lens, "actSeqLenOptional", T, "T (input.shape[0])")
               : lengths_to_starts(params.seq_lens, "actSeqLenOptional", T, "T (input.shape[0])");
    b.out.assign(1, 0);
    b.out.reserve(b.in.size());
    for (std::size_t i = 0; i + 1 < b.in.size(); ++i)
        b.out.push_back(checked_add(b.out.back(), compressed_count(b.in[i + 1] - b.in[i], l, d),
                                    "the compressed token count"));
    return b;
}

Problem validate_forward(const CompressArgs& args, const CompressParams& params) {
    Problem pr;
    const Arg in{"input", &args.input}, w{"weight", &args.weight}, o{"output", &args.output};
    for (const Arg& a : {in, w, o}) check_present(a);
    pr.dtype = check_dtypes({in, w, o});
    check_rank(o, 3, " (layout TND: [Tc, N, D])");
    read_shapes(pr, in, w, params);
    check_dims3(o, pr.Tc, pr.N, pr.D, kTcRule, "N of input", "D of input");
    check_extent(in, false);
    check_extent(w, false);
    check_extent(o, true);
    pr.input = args.input;
    pr.weight = args.weight;
    pr.output = args.output;
    return pr;
}

Problem validate_backward(const CompressGradArgs& args, const CompressParams& params) {
    Problem pr;
    pr.is_backward = true;
    const Arg g{"outputGrad", &args.output_grad}, in{"input", &args.input}, w{"weight", &args.weight},
        gi{"inputGradOut", &args.input_grad}, gw{"weightGradOut", &args.weight_grad};
    for (const Arg& a : {g, in, w, gi, gw}) check_present(a);
    pr.dtype = check_dtypes({g, in, w, gi, gw});
    check_rank(g, 3, " (layout TND: [Tc, N, D])");
    check_rank(gi, 3, " (the shape of input)");
    check_rank(gw, 2, " (the shape of weight)");
    read_shapes(pr, in, w, params);
    check_dims3(g, pr.Tc, pr.N, pr.D, kTcRule, "N of input", "D of input");
    check_dims3(gi, pr.T, pr.N, pr.D, "T of input", "N of input", "D of input");
    check_dim(gw, 0, pr.l, "compressBlockSize");
    check_dim(gw, 1, pr.N, "N of input");
    for (const Arg& a : {g, in, w}) check_extent(a, false);
    for (const Arg& a : {gi, gw}) check_extent(a, true);
    pr.output_grad = args.output_grad;
    pr.input = args.input;
    pr.weight = args.weight;
    pr.input_grad = args.input_grad;
    pr.weight_grad = args.weight_grad;
    return pr;
}

}  // namespace opennsa::detail::compress
