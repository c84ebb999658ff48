// Importance scores and the top-k ranking (docs/spec/compress_attention.md section 6), shared by
// the generic and the AVX2 passes. The float64 reference has its own plain versions.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <type_traits>
#include <vector>

#include "ops/compress_attention/problem.hpp"

namespace opennsa::detail::compress_attention {

// score[J] = sum_t w(t) * psum[(J + 1)*m - t] over t in [0, m + n - 2] for J < ns, positions
// outside [0, C) left out; psum holds the summed probabilities of one (token, kv head) at
// positions [0, C). Only positions inside the batch are visited, so the work and the memory are
// bounded by C whatever l and l' are (both may be any int64). Each block sums its taps in
// ascending t (descending position); interior blocks (all taps inside the batch, the same weight
// sequence) are done kGroup at a time as independent chains -- the same sums as one block after
// the other, and dropping the outside taps drops only exact zeros.
// m = l' / d, n = floor(l / d). Blocks past ceil(C / m) are fine too (the decoding operator's
// NS_b may be one more): their taps outside the batch are left out the same way.
template <class A>
inline void block_scores(std::int64_t m, std::int64_t n, const A* psum, std::int64_t C, std::int64_t ns,
                         A* score) noexcept {
    constexpr std::int64_t kGroup = 8;
    // Block J's taps cover positions [J*m - (n - 2), (J + 1)*m]; the weight of position J*m + u is
    // n - 1 + u for u <= 0 and min(n, m + 1 - u) above (w(t) with t = m - u). Taps have
    // u <= m, so m - u + 1 <= m fits for any m; m + 1 - u would overflow at m = INT64_MAX.
    const auto weight = [&](std::int64_t u) { return static_cast<A>(u <= 0 ? n - 1 + u : std::min(n, m - u + 1)); };
    // Interior blocks: J*m >= n - 2 and (J + 1)*m <= C - 1. ceil((n - 2) / m) without n - 2 + m.
    const std::int64_t first_inner = n <= 2 ? 0 : (n - 2) / m + ((n - 2) % m != 0 ? 1 : 0);
    const std::int64_t inner_end = C - 1 >= m ? std::min(ns, (C - 1) / m) : 0;  // J + 1 <= (C - 1) / m
    std::int64_t J = 0;
    const auto scalar = [&](std::int64_t b) {
        const std::int64_t base = b * m;  // < C + n: blocks never reach past the compressed span
        const std::int64_t lo = std::max<std::int64_t>(0, base - (n - 2));
        const std::int64_t hi = m > C - 1 - base ? C - 1 : base + m;
        A acc = 0;
        for (std::int64_t j = hi; j >= lo; --j) acc += weight(j - base) * psum[j];
        score[b] = acc;
    };
    for (; J < std::min(first_inner, ns); ++J) scalar(J);
    for (; J + kGroup <= inner_end; J += kGroup) {
        A acc[kGroup] = {};
        for (std::int64_t u = m; u >= -(n - 2); --u) {
            const A w = weight(u);
            for (std::int64_t g = 0; g < kGroup; ++g) acc[g] += w * psum[(J + g) * m + u];
        }
        for (std::int64_t g = 0; g < kGroup; ++g) score[J + g] = acc[g];
    }
    for (; J < ns; ++J) scalar(J);
}

template <class A>
inline void block_scores(const Problem& p, const A* psum, std::int64_t C, std::int64_t ns, A* score) noexcept {
    block_scores(p.m, p.n, psum, C, ns, score);
}

// The ranking rule: forced blocks first (ascending index), then NaN scores (ascending index), then
// the numbers in descending order, equal scores in ascending index. A total order on distinct
// indices, so any selection algorithm gives the same result.
template <class A>
struct RankBefore {
    const A* score;
    const std::uint8_t* forced;
    int kind(std::int32_t J) const noexcept { return forced[J] ? 0 : (std::isnan(score[J]) ? 1 : 2); }
    bool operator()(std::int32_t a, std::int32_t b) const noexcept {
        const int ka = kind(a), kb = kind(b);
        if (ka != kb) return ka < kb;
        if (ka == 2 && score[a] != score[b]) return score[a] > score[b];
        return a < b;
    }
};

// The ranking as one 64-bit key per block for fp32 scores, larger = earlier: forced, then NaN,
// then the score's order-preserving bits (-0 counted as +0), and ~J below so that equal scores
// rank by ascending index. Sorting keys is the same total order as RankBefore, only cheaper.
inline std::uint64_t rank_key(float score, bool forced, std::int64_t J) noexcept {
    std::uint32_t high = 0xFFFFFFFFu;
    if (!forced) {
        if (std::isnan(score)) {
            high = 0xFFFFFFFEu;
        } else {
            const std::uint32_t u = std::bit_cast<std::uint32_t>(score == 0.0f ? 0.0f : score);
            high = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // at most 0xFF800000 (+inf)
        }
    }
    return (std::uint64_t{high} << 32) | (0xFFFFFFFFu - static_cast<std::uint32_t>(J));
}

// topk[0, k) = the first k blocks of the ranking of score[0, ns), -1 past ns (ns < 2^31, which
// validation ensures). scratch: ns entries. A partial selection (nth_element on the k-th, then a
// sort of the k): the order is total, so any selection algorithm gives the same result.
template <class A>
void rank_blocks(const A* score, const std::uint8_t* forced, std::int64_t ns, std::int64_t k, std::uint64_t* scratch,
                 std::int32_t* topk) {
    const std::int64_t kept = std::min(ns, k);
    if constexpr (std::is_same_v<A, float>) {
        for (std::int64_t J = 0; J < ns; ++J) scratch[J] = rank_key(score[J], forced[J] != 0, J);
        const auto later = std::greater<std::uint64_t>();
        if (kept < ns) std::nth_element(scratch, scratch + kept - 1, scratch + ns, later);
        std::sort(scratch, scratch + kept, later);
        for (std::int64_t s = 0; s < kept; ++s)
            topk[s] = static_cast<std::int32_t>(0xFFFFFFFFu - static_cast<std::uint32_t>(scratch[s]));
    } else {
        for (std::int64_t J = 0; J < ns; ++J) scratch[J] = static_cast<std::uint64_t>(J);
        const RankBefore<A> before{score, forced};
        const auto by_rank = [&](std::uint64_t a, std::uint64_t b) {
            return before(static_cast<std::int32_t>(a), static_cast<std::int32_t>(b));
        };
        if (kept < ns) std::nth_element(scratch, scratch + kept - 1, scratch + ns, by_rank);
        std::sort(scratch, scratch + kept, by_rank);
        for (std::int64_t s = 0; s < kept; ++s) topk[s] = static_cast<std::int32_t>(scratch[s]);
    }
    for (std::int64_t s = kept; s < k; ++s) topk[s] = -1;
}

}  // namespace opennsa::detail::compress_attention
