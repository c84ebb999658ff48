// The oracle: docs/spec/select_attention.md's forward and backward written as plain loops with
// float64 accumulation. Slow on
// purpose; every other path is tested against it. Results are dense row-major float64 arrays.
#pragma once

#include <vector>

#include "ops/select_attention/problem.hpp"

namespace opennsa::detail::select_attention::reference {

struct ForwardResult {
    std::vector<double> out;  // [T1][N1][Dv]
    std::vector<double> max;  // [T1][N1]
    std::vector<double> sum;  // [T1][N1]
};

struct BackwardResult {
    std::vector<double> dq;  // [T1][N1][Dk]
    std::vector<double> dk;  // [T2][N2][Dk]
    std::vector<double> dv;  // [T2][N2][Dv]
};

// Reads p.q, p.k, p.v, p.topk (any float dtype, any strides). p's topk values must be valid.
ForwardResult forward(const Problem& p);

// Reads p.q, p.k, p.v, p.out, p.out_grad, p.softmax_max, p.softmax_sum (entry 0), p.topk.
BackwardResult backward(const Problem& p);

// The keys query token t (of batch `batch`) sees through kv head n2: absolute key rows, one entry
// per (slot, position), duplicates included, in slot order. Exposed for tests.
std::vector<std::int64_t> visible_keys(const Problem& p, std::int64_t batch, std::int64_t t, std::int64_t n2);

}  // namespace opennsa::detail::select_attention::reference
