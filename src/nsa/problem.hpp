// The one place that knows SPEC.md's rules: a call's tensors and parameters become a validated
// Problem, or an Error naming the parameter, the value seen and the rule. Nothing downstream
// re-checks; everything downstream may rely on what a Problem states.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "opennsa/opennsa.hpp"

namespace opennsa::detail {

// Batches as cumulative starts with a leading zero: batch b owns query tokens [q[b], q[b+1]) and
// key tokens [kv[b], kv[b+1]). Query tokens at or past q.back() are padding rows.
struct Batches {
    std::vector<std::int64_t> q;
    std::vector<std::int64_t> kv;

    std::int64_t count() const noexcept { return static_cast<std::int64_t>(q.size()) - 1; }
    std::int64_t valid_queries() const noexcept { return q.back(); }
    std::int64_t valid_keys() const noexcept { return kv.back(); }
    std::int64_t key_count(std::int64_t b) const noexcept { return kv[b + 1] - kv[b]; }
    // Number of key blocks of batch b: ceil(S2b / bs).
    std::int64_t block_count(std::int64_t b, std::int64_t bs) const noexcept {
        return (key_count(b) + bs - 1) / bs;
    }
};

struct Problem {
    bool is_backward = false;
    DType dtype = DType::f32;  // of q, k, v, out, out_grad and the gradients

    std::int64_t T1 = 0, T2 = 0;  // query / key tokens over all batches
    std::int64_t N1 = 0, N2 = 0, G = 0;  // query heads, kv heads, G = N1 / N2
    std::int64_t Dk = 0, Dv = 0;
    std::int64_t bs = 0, C = 0;  // selected block size and count
    double scale = 1.0;
    bool causal = false;
    Batches batches;

    // Validated views; the ones an operator does not use are empty.
    TensorView q, k, v, topk, out, out_grad, softmax_max, softmax_sum, dq, dk, dv;
};

// Throw Error(code, message) where message is one line.
[[noreturn]] void fail(ErrorCode code, const std::string& message);

Problem validate_forward(const ForwardArgs& args, const Params& params);
Problem validate_backward(const BackwardArgs& args, const Params& params);

// Every topk slot of every non-padding row is -1 or a block of its batch; throws on the first
// (lowest t, n2, slot) that is not. Reads topk only.
void check_topk_values(const Problem& p);

// Element pointer of a validated 3-D view (strides in elements).
template <class T>
inline T* element(const TensorView& t, std::int64_t i, std::int64_t j, std::int64_t k) noexcept {
    return static_cast<T*>(t.data) + i * t.strides[0] + j * t.strides[1] + k * t.strides[2];
}

}  // namespace opennsa::detail
