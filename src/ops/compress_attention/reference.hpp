// The oracle: docs/spec/compress_attention.md's forward (attention, importance scores, ranking)
// and backward written as plain loops with float64 accumulation. Slow on purpose; every other
// path is tested against it. Results are dense row-major arrays, statistics indexed by token
// (t, h) whatever layout the problem stores them in.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/compress_attention/problem.hpp"

namespace opennsa::detail::compress_attention::reference {

struct ForwardResult {
    std::vector<double> out;  // [T1][N1][Dv]
    std::vector<double> max;  // [T1][N1]
    std::vector<double> sum;  // [T1][N1]
    // Per (token, kv head), the importance score of each selection block of its batch (before
    // forcing) and whether topkMask forces it: [T1][N2][max_ns], zero past the batch's blocks.
    std::vector<double> score;
    std::vector<std::uint8_t> forced;
    std::vector<std::int32_t> topk;  // [T1][N2][k]
};

struct BackwardResult {
    std::vector<double> dq;  // [T1][N1][Dk]
    std::vector<double> dk;  // [T2][N2][Dk]
    std::vector<double> dv;  // [T2][N2][Dv]
    // The same sums over the terms' magnitudes, dS counted as P (|dP| + |D|): the scale of the
    // rounding an fp32 evaluation makes where the terms cancel (tests use it as a floor).
    std::vector<double> dq_abs, dk_abs, dv_abs;
};

// Reads p.q, p.k, p.v and the masks (any float dtype, any strides).
ForwardResult forward(const Problem& p);

// Reads p.q, p.k, p.v, p.out, p.out_grad, p.softmax_max, p.softmax_sum (entry 0 of a row, in the
// problem's layout) and the mask.
BackwardResult backward(const Problem& p);

// Query position i of batch b sees compressed position j (j < C_b).
bool visible(const Problem& p, std::int64_t b, std::int64_t i, std::int64_t j);

// The importance score of blocks [0, ns) from the probabilities of one (token, kv head) summed
// over its heads, psum[j] for the compressed positions j < C = psum.size() (docs/spec/README.md,
// "Importance score"); m = l' / d, n = l / d. Shared with the compress attention infer's oracle.
std::vector<double> block_scores(const std::vector<double>& psum, std::int64_t ns, std::int64_t m, std::int64_t n);

// The ranking of docs/spec section 6 on score[0, ns): k entries, -1 past ns. NaN scores rank
// after the forced blocks and before every number, in ascending index.
std::vector<std::int32_t> rank(const std::vector<double>& score, const std::vector<std::uint8_t>& forced,
                               std::int64_t k);

}  // namespace opennsa::detail::compress_attention::reference
