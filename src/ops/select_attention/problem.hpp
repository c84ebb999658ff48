// The one place that knows the selected attention's rules (docs/spec/select_attention.md): a
// call's tensors and parameters become a validated Problem, or an Error naming the parameter, the
// value seen and the rule. Nothing downstream re-checks; everything downstream may rely on what a
// Problem states.
#pragma once

#include <cstdint>
#include <vector>

#include "core/checked.hpp"
#include "core/view.hpp"
#include "opennsa/select_attention.hpp"

namespace opennsa::detail::select_attention {

// Batches as cumulative starts with a leading zero: batch b owns query tokens [q[b], q[b+1]) and
// key tokens [kv[b], kv[b+1]). Query tokens at or past q.back() are padding rows.
struct Batches {
    std::vector<std::int64_t> q;
    std::vector<std::int64_t> kv;

    std::int64_t count() const noexcept { return static_cast<std::int64_t>(q.size()) - 1; }
    std::int64_t valid_queries() const noexcept { return q.back(); }
    std::int64_t valid_keys() const noexcept { return kv.back(); }
    std::int64_t key_count(std::int64_t b) const noexcept { return kv[b + 1] - kv[b]; }
    // Number of key blocks of batch b: ceil(S2b / bs), for any bs >= 1.
    std::int64_t block_count(std::int64_t b, std::int64_t bs) const noexcept { return ceil_div(key_count(b), bs); }
};

struct Problem {
    bool is_backward = false;
    DType dtype = DType::f32;  // of q, k, v, out, out_grad and the gradients

    std::int64_t T1 = 0, T2 = 0;  // query / key tokens over all batches
    std::int64_t N1 = 0, N2 = 0, G = 0;  // query heads, kv heads, G = N1 / N2
    std::int64_t Dk = 0, Dv = 0;
    std::int64_t bs = 0, C = 0;  // selected block size and count
    // The most keys one block can hold: min(bs, the longest batch's keys), at least 1. Scratch is
    // sized by it, never by the nominal bs (which may be any positive int64).
    std::int64_t block_len = 1;
    double scale = 1.0;
    bool causal = false;
    Batches batches;

    // Validated views; the ones an operator does not use are empty.
    TensorView q, k, v, topk, out, out_grad, softmax_max, softmax_sum, dq, dk, dv;
};

// The most keys a query row may see through its slots: selectedBlockCount x block_len (2^24).
inline constexpr std::int64_t kMaxRowKeys = std::int64_t{1} << 24;

Problem validate_forward(const ForwardArgs& args, const Params& params);
Problem validate_backward(const BackwardArgs& args, const Params& params);

// Every topk slot of every non-padding row is -1 or a block of its batch; throws on the first
// (lowest t, n2, slot) that is not. Reads topk only; a dimension with stride 0 is read once (its
// entries are the same element), so a broadcast topk costs what its distinct values cost.
void check_topk_values(const Problem& p);

}  // namespace opennsa::detail::select_attention
