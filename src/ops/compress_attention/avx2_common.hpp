// Pieces the AVX2 passes of the compress attention (and of its decoding form,
// compress_attention_infer) use. Included by avx2_*.cpp only, after
// kernels/avx2/core.hpp (whose rules it follows: NSA_AVX2 functions in an internal namespace).
#pragma once

#if defined(__x86_64__)
#include <algorithm>
#include <limits>
#include <vector>

#include "ops/compress_attention/problem.hpp"
#include "kernels/avx2/core.hpp"

namespace opennsa::detail::compress_attention::avx2 {
namespace {

using namespace opennsa::detail::avx2;

// The visibility bytes of query position i (batch of C compressed tokens) over positions [0, np):
// 1 where it sees the position, 0 elsewhere; returns how many it sees. Without a mask a prefix.
inline std::int64_t visibility(const Problem& p, std::int64_t i, std::int64_t C, std::int64_t np, std::uint8_t* vis) {
    const std::int64_t bound = std::min(p.visible_bound(i, C), np);
    for (std::int64_t j = 0; j < np; ++j) vis[j] = j < bound;
    if (!p.use_mask) return bound;
    std::int64_t count = 0;
    for (std::int64_t j = 0; j < bound; ++j) {
        vis[j] = !p.masked(i, j);
        count += vis[j];
    }
    return count;
}

// 8 visibility bytes (0 / 1) as a lane mask.
NSA_AVX2 inline __m256 lanes_of(const std::uint8_t* vis) {
    const __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(vis)));
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(w, _mm256_setzero_si256()));
}

// One row in place: s -> E = exp(scale s - max) on visible lanes, 0 elsewhere; returns max, sum.
NSA_AVX2 inline void softmax_row(float* s, const std::uint8_t* vis, std::int64_t np, float scale, float* mx_out,
                                 float* sum_out) {
    const __m256 vscale = _mm256_set1_ps(scale);
    const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    NanMax mx = nanmax_init();
    for (std::int64_t j0 = 0; j0 < np; j0 += kLanes) {
        const __m256 v = _mm256_blendv_ps(ninf, _mm256_mul_ps(_mm256_loadu_ps(s + j0), vscale), lanes_of(vis + j0));
        _mm256_storeu_ps(s + j0, v);
        nanmax_add(mx, v);
    }
    const float m = nanmax_value(mx);
    const __m256 vm = _mm256_set1_ps(m);
    __m256 sum = _mm256_setzero_ps();
    for (std::int64_t j0 = 0; j0 < np; j0 += kLanes) {
        const __m256 e = _mm256_and_ps(exp_ps(_mm256_sub_ps(_mm256_loadu_ps(s + j0), vm)), lanes_of(vis + j0));
        _mm256_storeu_ps(s + j0, e);
        sum = _mm256_add_ps(sum, e);
    }
    *mx_out = m;
    *sum_out = hsum(sum);
}

// psum[j] = sum_g E[g][j] * inv[g] for j < np, the G rows of one token (in order), 0 where the
// token does not see j: a NaN row has inv = NaN, and 0 * NaN must not reach a block the token does
// not see.
NSA_AVX2 inline void sum_heads(const float* e, std::int64_t lds, const float* inv, std::int64_t G, std::int64_t np,
                               const std::uint8_t* vis, float* psum) {
    for (std::int64_t j0 = 0; j0 < np; j0 += kLanes) {
        __m256 acc = _mm256_setzero_ps();
        for (std::int64_t g = 0; g < G; ++g)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(e + g * lds + j0), _mm256_set1_ps(inv[g]), acc);
        _mm256_storeu_ps(psum + j0, _mm256_and_ps(acc, lanes_of(vis + j0)));
    }
}

// Rows [r0, r1) of a 3-D view of storage S (all N heads, D wide) hold only finite values. r: Dp
// floats of scratch.
template <class S>
NSA_AVX2 bool block_finite(const TensorView& t, std::int64_t r0, std::int64_t r1, std::int64_t N, std::int64_t D,
                           std::int64_t Dp, float* r) {
    const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
    __m256 ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (std::int64_t row = r0; row < r1; ++row)
        for (std::int64_t n = 0; n < N; ++n) {
            load_row_padded<S>(t, row, n, r, D, Dp);  // |x| < inf is false for inf and NaN
            for (std::int64_t d0 = 0; d0 < Dp; d0 += kLanes)
                ok = _mm256_and_ps(ok, _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(r + d0), abs), inf, _CMP_LT_OQ));
        }
    return _mm256_movemask_ps(ok) == 0xff;
}

// Every element of rows [0, rows) of a 3-D view of storage S is finite.
template <class S>
bool rows_finite(const TensorView& t, std::int64_t rows, std::int64_t N, std::int64_t D, int threads) {
    constexpr std::int64_t kRows = 64;
    const std::int64_t tasks = (rows + kRows - 1) / kRows, Dp = padded(D);
    std::vector<float> buf(static_cast<std::size_t>(checked_product({threads, Dp}, "the check scratch")));
    std::vector<char> bad(static_cast<std::size_t>(tasks), 0);
    parallel_for(tasks, threads, [&](std::int64_t task, int worker) {
        float* r = buf.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(Dp);
        bad[static_cast<std::size_t>(task)] = !block_finite<S>(t, task * kRows, std::min((task + 1) * kRows, rows), N, D, Dp, r);
    });
    return std::none_of(bad.begin(), bad.end(), [](char x) { return x != 0; });
}

}  // namespace
}  // namespace opennsa::detail::compress_attention::avx2

#endif  // __x86_64__
