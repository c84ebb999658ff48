// Importance scores and the top-k ranking (docs/spec/compress_attention.md section 6), shared by
// the generic and the AVX2 passes. The float64 reference has its own plain versions.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ops/compress_attention/problem.hpp"

namespace opennsa::detail::compress_attention {

// The summed probabilities of one (token, kv head), indexed by compressed position, as the
// stencil reads them: block J reads positions (J + 1)*m - t for t in [0, m + n - 2], that is
// [J*m - (n - 2), (J + 1)*m]. A buffer holds lead() zeros before position 0 and is zero from C_b
// on, so the stencil runs without bounds checks.
struct ScoreWindow {
    std::int64_t lead = 0;  // zeros before position 0
    std::int64_t span = 0;  // positions [0, span) the blocks of the longest batch read
    std::int64_t size() const noexcept { return lead + span; }

    explicit ScoreWindow(const Problem& p)
        : lead(std::max<std::int64_t>(0, p.n - 2)),
          span(checked_add(checked_product({p.max_ns, p.m}, "the score window"), 1, "the score window")) {}
};

// score[J] = sum_t w(t) * psum[(J + 1)*m - t] for J < ns; psum points at position 0 of a buffer
// laid out as ScoreWindow says. w is the stencil of problem.hpp, weights[t] for t < m + n - 1.
// Each block sums its taps in ascending t; blocks are done kGroup at a time so that their sums
// are independent chains (the same values as one block after the other).
template <class A>
inline void block_scores(const Problem& p, const A* weights, const A* psum, std::int64_t ns, A* score) noexcept {
    constexpr std::int64_t kGroup = 8;
    const std::int64_t taps = p.m + p.n - 1, m = p.m;
    std::int64_t J0 = 0;
    for (; J0 + kGroup <= ns; J0 += kGroup) {
        A acc[kGroup] = {};
        for (std::int64_t t = 0; t < taps; ++t)
            for (std::int64_t g = 0; g < kGroup; ++g) acc[g] += weights[t] * psum[(J0 + g + 1) * m - t];
        for (std::int64_t g = 0; g < kGroup; ++g) score[J0 + g] = acc[g];
    }
    for (std::int64_t J = J0; J < ns; ++J) {
        A acc = 0;
        for (std::int64_t t = 0; t < taps; ++t) acc += weights[t] * psum[(J + 1) * m - t];
        score[J] = acc;
    }
}

template <class A>
std::vector<A> stencil_weights(const Problem& p) {
    std::vector<A> w(static_cast<std::size_t>(p.m + p.n - 1));
    for (std::int64_t t = 0; t < p.m + p.n - 1; ++t) w[static_cast<std::size_t>(t)] = static_cast<A>(stencil_weight(p.m, p.n, t));
    return w;
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

// topk[0, k) = the first k blocks of the ranking of score[0, ns) (ns > 0), -1 past ns. order: ns
// entries of scratch.
template <class A>
void rank_blocks(const A* score, const std::uint8_t* forced, std::int64_t ns, std::int64_t k, std::int32_t* order,
                 std::int32_t* topk) {
    for (std::int64_t J = 0; J < ns; ++J) order[J] = static_cast<std::int32_t>(J);
    const RankBefore<A> before{score, forced};
    const std::int64_t kept = std::min(ns, k);
    if (kept < ns) std::nth_element(order, order + kept - 1, order + ns, before);
    std::sort(order, order + kept, before);
    for (std::int64_t s = 0; s < kept; ++s) topk[s] = order[s];
    for (std::int64_t s = kept; s < k; ++s) topk[s] = -1;
}

}  // namespace opennsa::detail::compress_attention
