// The one place that knows the compression operator's rules (docs/spec/compress.md): a call's
// tensors and parameters become a validated Problem, or an Error naming the CANN parameter, the
// value seen and the rule. Nothing downstream re-checks; everything downstream may rely on what a
// Problem states.
#pragma once

#include <cstdint>
#include <vector>

#include "core/view.hpp"
#include "opennsa/compress.hpp"

namespace opennsa::detail::compress {

// The batches of a call, each as a range of input rows and a range of compressed (output) rows:
// batch b owns input rows [in[b], in[b+1]) and output rows [out[b], out[b+1]). Both vectors hold a
// leading zero and B + 1 entries; input rows at or past in.back() belong to no batch, and
// out.back() is Tc.
struct Batches {
    std::vector<std::int64_t> in;
    std::vector<std::int64_t> out;

    std::int64_t count() const noexcept { return static_cast<std::int64_t>(in.size()) - 1; }
    std::int64_t length(std::int64_t b) const noexcept { return in[b + 1] - in[b]; }
    std::int64_t compressed(std::int64_t b) const noexcept { return out[b + 1] - out[b]; }
    std::int64_t total_compressed() const noexcept { return out.back(); }
};

// C(S) of docs/spec: the number of windows of length l, stride d, that fit in S tokens.
constexpr std::int64_t compressed_count(std::int64_t S, std::int64_t l, std::int64_t d) noexcept {
    return S >= l ? (S - l) / d + 1 : 0;
}

// Checks compressBlockSize, compressStride, actSeqLenType and the length array against T input
// rows, and places the batches. The rules of spec 1.4 that do not involve tensors.
Batches make_batches(std::int64_t T, const CompressParams& params);

struct Problem {
    bool is_backward = false;
    DType dtype = DType::f32;  // of every tensor of the call

    std::int64_t T = 0;   // input rows
    std::int64_t N = 0;   // heads
    std::int64_t D = 0;   // head dim
    std::int64_t l = 0;   // window length (compressBlockSize)
    std::int64_t d = 0;   // stride (compressStride)
    std::int64_t Tc = 0;  // compressed rows, sum_b C(S_b)
    Batches batches;

    // Validated views; the ones a direction does not use are empty.
    TensorView input, weight, output;            // forward: input, weight -> output
    TensorView output_grad, input_grad, weight_grad;  // backward: + output_grad -> input_grad, weight_grad
};

Problem validate_forward(const CompressArgs& args, const CompressParams& params);
Problem validate_backward(const CompressGradArgs& args, const CompressParams& params);

}  // namespace opennsa::detail::compress
