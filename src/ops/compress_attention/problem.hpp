// The one place that knows the compress attention's rules (docs/spec/compress_attention.md): a
// call's tensors and parameters become a validated Problem, or an Error naming the parameter (by
// its CANN name), the value seen and the rule. Nothing downstream re-checks; everything downstream
// may rely on what a Problem states. Also the rules every path shares: which compressed tokens a
// query sees, where a softmax statistic row lives, the block count of a batch.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/checked.hpp"
#include "core/view.hpp"
#include "opennsa/compress_attention.hpp"

namespace opennsa::detail::compress_attention {

// Batches as cumulative starts with a leading zero: batch b owns query tokens [q[b], q[b+1]) and
// compressed key tokens [kv[b], kv[b+1]). Query tokens at or past q.back() are padding rows;
// compressed rows at or past kv.back() are never read.
struct Batches {
    std::vector<std::int64_t> q;
    std::vector<std::int64_t> kv;

    std::int64_t count() const noexcept { return static_cast<std::int64_t>(q.size()) - 1; }
    std::int64_t valid_queries() const noexcept { return q.back(); }
    std::int64_t valid_keys() const noexcept { return kv.back(); }
    std::int64_t query_count(std::int64_t b) const noexcept { return q[b + 1] - q[b]; }
    std::int64_t key_count(std::int64_t b) const noexcept { return kv[b + 1] - kv[b]; }
};

struct Problem {
    bool is_backward = false;
    DType dtype = DType::f32;  // of query, key, value, out (and out_grad and the gradients)

    std::int64_t T1 = 0, T2 = 0;         // query tokens / compressed tokens over all batches
    std::int64_t N1 = 0, N2 = 0, G = 0;  // query heads, kv heads, G = N1 / N2
    std::int64_t Dk = 0, Dv = 0;
    std::int64_t l = 0, d = 0;           // compressBlockSize, compressStride
    std::int64_t sel_len = 0;            // l' (selectBlockSize)
    std::int64_t sel_count = 0;          // k (selectBlockCount)
    std::int64_t m = 0, n = 0;           // l' / d, l / d (floor)
    double scale = 1.0;
    bool causal = false;      // sparseMode 2: the NSA causal rule, no mask read
    bool use_mask = false;    // sparseMode 0 / 1 with attenMaskOptional given
    bool use_topk_mask = false;
    bool stats_token_major = false;
    Batches batches;
    // Over the batches: the most queries, compressed tokens and selection blocks of one batch.
    std::int64_t max_s1 = 0, max_c = 0, max_ns = 0;

    // Validated views; the ones a direction does not use are empty.
    TensorView q, k, v, atten_mask, topk_mask, out, topk, softmax_max, softmax_sum, out_grad, dq, dk, dv;

    // Selection blocks of batch b: ceil(C_b / m).
    std::int64_t block_count(std::int64_t b) const noexcept { return ceil_div(batches.key_count(b), m); }

    // With the built-in rule, query position i sees compressed positions j < causal_visible(i, C)
    // (j*d + l - 1 <= i), a prefix of the batch.
    std::int64_t causal_visible(std::int64_t i, std::int64_t C) const noexcept {
        return i < l - 1 ? 0 : std::min(C, (i - (l - 1)) / d + 1);
    }

    // With the built-in rule, the first query position that sees compressed position j
    // (j*d + l - 1, saturated at `limit`).
    std::int64_t causal_first(std::int64_t j, std::int64_t limit) const noexcept {
        std::int64_t first = 0;
        if (__builtin_mul_overflow(j, d, &first) || __builtin_add_overflow(first, l - 1, &first)) return limit;
        return std::min(first, limit);
    }

    // How many compressed positions, from the first, a query at position i of a batch with C
    // compressed tokens can see at most: every one of them is visible unless the mask says no.
    std::int64_t visible_bound(std::int64_t i, std::int64_t C) const noexcept {
        return causal ? causal_visible(i, C) : C;
    }

    // Position i of a batch masks compressed position j (attenMaskOptional, when it is read).
    bool masked(std::int64_t i, std::int64_t j) const noexcept {
        return use_mask && *element<const std::uint8_t>(atten_mask, i, j) != 0;
    }

    // Block J is forced for query position i (topkMaskOptional).
    bool forced(std::int64_t i, std::int64_t J) const noexcept {
        return use_topk_mask && *element<const std::uint8_t>(topk_mask, i, J) != 0;
    }

    // Where the softmax statistics of (batch b, head h, position i) live in the [T1, N1, 8] views:
    // CANN's head-major flat row qs_b * N1 + h * S1_b + i, or token-major (t, h).
    std::pair<std::int64_t, std::int64_t> stat_index(std::int64_t b, std::int64_t h, std::int64_t i) const noexcept {
        if (stats_token_major) return {batches.q[b] + i, h};
        const std::int64_t flat = batches.q[b] * N1 + h * batches.query_count(b) + i;
        return {flat / N1, flat % N1};
    }
};

Problem validate_forward(const CompressAttentionArgs& args, const CompressAttentionParams& params);

// The relations of l, d, l' and k that both compress attention operators (training and decoding)
// require: 1 <= d <= l <= l', l' % d == 0, k >= 1. stride_name: the stride's CANN name there.
void check_selection_attributes(std::int64_t l, std::int64_t d, std::int64_t sel, std::int64_t k,
                                const char* stride_name);
Problem validate_backward(const CompressAttentionGradArgs& args, const CompressAttentionParams& params);

// Importance-score stencil weight w(t) = #{(a, b): 0 <= a < m, 0 <= b < n, a + b = t}.
constexpr std::int64_t stencil_weight(std::int64_t m, std::int64_t n, std::int64_t t) noexcept {
    return std::min({t + 1, n, m + n - 1 - t});
}

}  // namespace opennsa::detail::compress_attention
