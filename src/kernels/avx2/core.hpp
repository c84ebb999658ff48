// AVX2 + FMA building blocks shared by every operator's AVX2 passes: the register-tiled fp32
// microkernel, the vector exp, row conversions, the 8x8 transpose and block packing. Operators'
// avx2_*.cpp translation units include it last: every function here carries NSA_AVX2 (a
// per-function target, so the rest of the library, and any inline function shared with it, stays
// baseline x86-64) and sits in an internal namespace, so no AVX2 code can leak into the portable
// path through the linker. Nothing here knows an operator: sizes, pointers, strides and views.
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/rows.hpp"
#include "core/threading.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/tiles.hpp"

#define NSA_AVX2 __attribute__((target("avx2,fma,f16c")))
// The zmm form of the matmul tiles (called, never inlined, from the AVX2 passes where
// use_zmm_gemm() holds).
#define NSA_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma,f16c")))
// The bf16 dot tiles (called where use_bf16_dot() holds).
#define NSA_AVX512BF16 __attribute__((target("avx512bf16,avx512f,avx512vl,avx2,fma,f16c")))

namespace opennsa::detail::avx2 {
namespace {

using tiles::kLanes;
using tiles::kMR;
using tiles::kNR;
using tiles::padded;

// Operand access. The microkernel broadcasts A(i, k) and loads rows of B as vectors.
struct StridedA {  // A(i, k) = p[i * rs + k * cs]
    const float* p;
    std::int64_t rs, cs;
    const float* row(std::int64_t i) const noexcept { return p + i * rs; }
};
struct GatheredA {  // A(i, k) = rows[i][k]
    const float* const* rows;
    static constexpr std::int64_t cs = 1;
    const float* row(std::int64_t i) const noexcept { return rows[i]; }
};
struct StridedB {  // B(k, :) = p + k * ld
    const float* p;
    std::int64_t ld;
    const float* row(std::int64_t k) const noexcept { return p + k * ld; }
};
struct GatheredB {  // B(k, :) = rows[k]
    const float* const* rows;
    const float* row(std::int64_t k) const noexcept { return rows[k]; }
};
struct StridedC {  // C(i, :) = p + i * ld
    float* p;
    std::int64_t ld;
    float* row(std::int64_t i) const noexcept { return p + i * ld; }
};
struct GatheredC {  // C(i, :) = rows[i]
    float* const* rows;
    float* row(std::int64_t i) const noexcept { return rows[i]; }
};

// c[MR x NR*8] (+)= sum_k A(i, k) B(k, j0 + j). The k order is ascending for every element, so a
// result does not depend on which tile computed it.
template <int MR, int NR, class B>
NSA_AVX2 inline void micro(std::int64_t K, const float* const* a, std::int64_t acs, const B& b, std::int64_t j0,
                           float* const* c, bool accumulate) {
    __m256 acc[MR][NR];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j)
            acc[i][j] = accumulate ? _mm256_loadu_ps(c[i] + j0 + j * kLanes) : _mm256_setzero_ps();
    const float* ap[MR];
    for (int i = 0; i < MR; ++i) ap[i] = a[i];
    for (std::int64_t k = 0; k < K; ++k) {
        const float* br = b.row(k) + j0;
        __m256 bv[NR];
        for (int j = 0; j < NR; ++j) bv[j] = _mm256_loadu_ps(br + j * kLanes);
        for (int i = 0; i < MR; ++i) {
            const __m256 av = _mm256_broadcast_ss(ap[i]);
            ap[i] += acs;
            for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) _mm256_storeu_ps(c[i] + j0 + j * kLanes, acc[i][j]);
}

template <int NR, class B>
NSA_AVX2 inline void micro_rows(int rows, std::int64_t K, const float* const* a, std::int64_t acs, const B& b,
                                std::int64_t j0, float* const* c, bool accumulate) {
    switch (rows) {
        case 6: return micro<6, NR>(K, a, acs, b, j0, c, accumulate);
        case 5: return micro<5, NR>(K, a, acs, b, j0, c, accumulate);
        case 4: return micro<4, NR>(K, a, acs, b, j0, c, accumulate);
        case 3: return micro<3, NR>(K, a, acs, b, j0, c, accumulate);
        case 2: return micro<2, NR>(K, a, acs, b, j0, c, accumulate);
        default: return micro<1, NR>(K, a, acs, b, j0, c, accumulate);
    }
}

// The zmm microkernel: c[MR x (NR*16 - masked)] (+)= A B with the same ascending FMA chain per
// element as micro(), so both widths give the same bits. The last vector covers the columns
// `tail` selects (masked loads and stores never touch the others), since packed rows are padded
// to 8, not 16.
template <int MR, int NR, class B>
NSA_AVX512 inline void micro512(std::int64_t K, const float* const* a, std::int64_t acs, const B& b, std::int64_t j0,
                                float* const* c, bool accumulate, __mmask16 tail) {
    __mmask16 mask[NR];
    for (int j = 0; j < NR; ++j) mask[j] = j == NR - 1 ? tail : __mmask16(0xFFFF);
    __m512 acc[MR][NR];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j)
            acc[i][j] = accumulate ? _mm512_maskz_loadu_ps(mask[j], c[i] + j0 + j * 16) : _mm512_setzero_ps();
    const float* ap[MR];
    for (int i = 0; i < MR; ++i) ap[i] = a[i];
    for (std::int64_t k = 0; k < K; ++k) {
        const float* br = b.row(k) + j0;
        __m512 bv[NR];
        for (int j = 0; j < NR; ++j) bv[j] = _mm512_maskz_loadu_ps(mask[j], br + j * 16);
        for (int i = 0; i < MR; ++i) {
            const __m512 av = _mm512_set1_ps(*ap[i]);
            ap[i] += acs;
            for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) _mm512_mask_storeu_ps(c[i] + j0 + j * 16, mask[j], acc[i][j]);
}

inline constexpr int kMR512 = 8;  // 8 rows x 2 zmm = 16 accumulators

template <int NR, class B>
NSA_AVX512 inline void micro512_rows(int rows, std::int64_t K, const float* const* a, std::int64_t acs, const B& b,
                                     std::int64_t j0, float* const* c, bool accumulate, __mmask16 tail) {
    switch (rows) {
        case 8: return micro512<8, NR>(K, a, acs, b, j0, c, accumulate, tail);
        case 7: return micro512<7, NR>(K, a, acs, b, j0, c, accumulate, tail);
        case 6: return micro512<6, NR>(K, a, acs, b, j0, c, accumulate, tail);
        case 5: return micro512<5, NR>(K, a, acs, b, j0, c, accumulate, tail);
        case 4: return micro512<4, NR>(K, a, acs, b, j0, c, accumulate, tail);
        case 3: return micro512<3, NR>(K, a, acs, b, j0, c, accumulate, tail);
        case 2: return micro512<2, NR>(K, a, acs, b, j0, c, accumulate, tail);
        default: return micro512<1, NR>(K, a, acs, b, j0, c, accumulate, tail);
    }
}

// gemm_tiles on zmm registers: column panels of 32 (the last one 8, 16 or 24 wide), 8-row tiles.
template <class A, class B, class C>
NSA_AVX512 __attribute__((noinline)) void gemm_tiles_zmm(std::int64_t M, std::int64_t N, std::int64_t K, const A& a,
                                                         const B& b, const C& c, bool accumulate) {
    for (std::int64_t j0 = 0; j0 < N; j0 += 32) {
        const std::int64_t width = std::min<std::int64_t>(32, N - j0);  // 8, 16, 24 or 32
        const __mmask16 tail = width % 16 == 0 ? __mmask16(0xFFFF) : __mmask16(0x00FF);
        for (std::int64_t i0 = 0; i0 < M; i0 += kMR512) {
            const int rows = static_cast<int>(std::min<std::int64_t>(kMR512, M - i0));
            const float* ap[kMR512];
            float* cp[kMR512];
            for (int i = 0; i < rows; ++i) {
                ap[i] = a.row(i0 + i);
                cp[i] = c.row(i0 + i);
            }
            if (width > 16)
                micro512_rows<2>(rows, K, ap, a.cs, b, j0, cp, accumulate, tail);
            else
                micro512_rows<1>(rows, K, ap, a.cs, b, j0, cp, accumulate, tail);
        }
    }
}

// C[M x N] (+)= A[M x K] B[K x N], N a multiple of 8 (packed rows are zero-padded to it).
// Column panels outside, row tiles inside: a B panel (K x 16) is reused from L1 by every row tile.
// On AVX-512 CPUs the zmm form runs instead (same bits).
template <class A, class B, class C>
NSA_AVX2 void gemm_tiles(std::int64_t M, std::int64_t N, std::int64_t K, const A& a, const B& b, const C& c,
                         bool accumulate) {
    if (K == 0 && accumulate) return;
    if (use_zmm_gemm()) return gemm_tiles_zmm(M, N, K, a, b, c, accumulate);
    for (std::int64_t j0 = 0; j0 < N; j0 += kNR * kLanes) {
        const bool full = j0 + kNR * kLanes <= N;
        for (std::int64_t i0 = 0; i0 < M; i0 += kMR) {
            const int rows = static_cast<int>(std::min<std::int64_t>(kMR, M - i0));
            const float* ap[kMR];
            float* cp[kMR];
            for (int i = 0; i < rows; ++i) {
                ap[i] = a.row(i0 + i);
                cp[i] = c.row(i0 + i);
            }
            if (full)
                micro_rows<kNR>(rows, K, ap, a.cs, b, j0, cp, accumulate);
            else
                micro_rows<1>(rows, K, ap, a.cs, b, j0, cp, accumulate);
        }
    }
}

// ---- bf16 dot tiles (AVX512_BF16, where use_bf16_dot() holds) ------------------------------
//
// For bf16 problems: vdpbf16ps multiplies two bf16 pairs exactly and adds both products to an
// fp32 accumulator, twice the FMA tiles' work per instruction. Operands that are inputs (q, k, v,
// dO) are exact in bf16; fp32 intermediates (P, dS) are rounded to bf16 first (SPEC 7 allows it). K runs in pairs: word kk of an A row holds elements (2kk, 2kk+1) in its low and
// high halves, and B is pair-interleaved, B(kk, j) = (b(2kk, j), b(2kk+1, j)) in one word. Each
// output element is the same ascending chain of pair steps whichever tile computes it, so the
// bits do not depend on the tiling or the thread count (they differ from the FMA chain's).
struct PairedA {  // A(i, kk) = p[i * ld + kk * cs] words
    const std::uint32_t* p;
    std::int64_t ld, cs;
    const std::uint32_t* row(std::int64_t i) const noexcept { return p + i * ld; }
};
struct PairedB {  // B row kk = p + kk * ld words
    const std::uint32_t* p;
    std::int64_t ld;
    const std::uint32_t* row(std::int64_t kk) const noexcept { return p + kk * ld; }
};
struct GatheredPairedA {  // A row i = rows[i], unit stride along kk
    const std::uint32_t* const* rows;
    static constexpr std::int64_t cs = 1;
    const std::uint32_t* row(std::int64_t i) const noexcept { return rows[i]; }
};
struct GatheredPairedB {  // B row kk = rows[kk]
    const std::uint32_t* const* rows;
    const std::uint32_t* row(std::int64_t kk) const noexcept { return rows[kk]; }
};


// fp32 values rounded to the nearest bf16 (ties to even: u + 0x7fff + bit 16 of u), in the high
// halves of the lanes (low halves zero). Exact for values that are bf16 numbers, NaN payloads
// included (their low 16 bits are zero, so nothing carries); other NaNs are the caller's case.
NSA_AVX2 inline __m256i bf16_high_halves(__m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    const __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd));
    return _mm256_and_si256(r, _mm256_set1_epi32(static_cast<int>(0xffff0000u)));
}

// Words of the pair form: bf16(even) in the low half, bf16(odd) in the high half, each rounded
// to nearest even (exact for the inputs q, k, v, dO; the rounding SPEC 7 allows for P and dS).
NSA_AVX2 inline __m256i pair_words(__m256 even, __m256 odd) {
    return _mm256_or_si256(_mm256_srli_epi32(bf16_high_halves(even), 16), bf16_high_halves(odd));
}

// out[kk] = (x[2kk], x[2kk+1]) for kk < (n + 1) / 2 rounded to bf16 (vcvtneps2bf16, nearest
// even, 16 at a time), a zero high half past n.
NSA_AVX512BF16 inline void pair_row(const float* x, std::int64_t n, std::uint32_t* out) {
    for (std::int64_t i = 0; i < n; i += 16) {
        const std::int64_t left = std::min<std::int64_t>(16, n - i);
        const __m512 v = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << left) - 1u), x + i);
        const __m256i words = (__m256i)_mm512_cvtneps_pbh(v);
        _mm256_mask_storeu_epi32(out + i / 2, static_cast<__mmask8>((1u << ((left + 1) / 2)) - 1u), words);
    }
}

// The pair-interleaved form of a transposed fp32 panel: out[kk][i] = (panel[2kk][i],
// panel[2kk+1][i]) for kk < D2, i < cols (cols a multiple of 8; the panel has 2 D2 rows).
NSA_AVX2 inline void pair_panel(const float* panel, std::int64_t D2, std::int64_t cols, std::uint32_t* out) {
    for (std::int64_t kk = 0; kk < D2; ++kk)
        for (std::int64_t i = 0; i < cols; i += kLanes)
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + kk * cols + i),
                                pair_words(_mm256_loadu_ps(panel + 2 * kk * cols + i),
                                           _mm256_loadu_ps(panel + (2 * kk + 1) * cols + i)));
}

// The pair form of rows r0 and r1 (r1 null: a zero row) of n fp32 values, as one row of a B
// operand paired over rows: out[d] = (r0[d], r1[d]); n a multiple of 8.
NSA_AVX2 inline void pair_two_rows(const float* r0, const float* r1, std::int64_t n, std::uint32_t* out) {
    for (std::int64_t d = 0; d < n; d += kLanes)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + d),
                            pair_words(_mm256_loadu_ps(r0 + d), r1 ? _mm256_loadu_ps(r1 + d) : _mm256_setzero_ps()));
}

template <int MR, int NR, class B>
NSA_AVX512BF16 inline void micro_bf16(std::int64_t K2, const std::uint32_t* const* a, std::int64_t acs, const B& b,
                                      std::int64_t j0, float* const* c, bool accumulate, __mmask16 tail) {
    __mmask16 mask[NR];
    for (int j = 0; j < NR; ++j) mask[j] = j == NR - 1 ? tail : __mmask16(0xFFFF);
    __m512 acc[MR][NR];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j)
            acc[i][j] = accumulate ? _mm512_maskz_loadu_ps(mask[j], c[i] + j0 + j * 16) : _mm512_setzero_ps();
    for (std::int64_t kk = 0; kk < K2; ++kk) {
        const std::uint32_t* br = b.row(kk) + j0;
        __m512i bv[NR];
        for (int j = 0; j < NR; ++j) bv[j] = _mm512_maskz_loadu_epi32(mask[j], br + j * 16);
        for (int i = 0; i < MR; ++i) {
            const __m512i av = _mm512_set1_epi32(static_cast<int>(a[i][kk * acs]));
            for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], (__m512bh)av, (__m512bh)bv[j]);
        }
    }
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) _mm512_mask_storeu_ps(c[i] + j0 + j * 16, mask[j], acc[i][j]);
}

template <int NR, class B>
NSA_AVX512BF16 inline void micro_bf16_rows(int rows, std::int64_t K2, const std::uint32_t* const* a, std::int64_t acs,
                                           const B& b, std::int64_t j0, float* const* c, bool accumulate,
                                           __mmask16 tail) {
    switch (rows) {
        case 8: return micro_bf16<8, NR>(K2, a, acs, b, j0, c, accumulate, tail);
        case 7: return micro_bf16<7, NR>(K2, a, acs, b, j0, c, accumulate, tail);
        case 6: return micro_bf16<6, NR>(K2, a, acs, b, j0, c, accumulate, tail);
        case 5: return micro_bf16<5, NR>(K2, a, acs, b, j0, c, accumulate, tail);
        case 4: return micro_bf16<4, NR>(K2, a, acs, b, j0, c, accumulate, tail);
        case 3: return micro_bf16<3, NR>(K2, a, acs, b, j0, c, accumulate, tail);
        case 2: return micro_bf16<2, NR>(K2, a, acs, b, j0, c, accumulate, tail);
        default: return micro_bf16<1, NR>(K2, a, acs, b, j0, c, accumulate, tail);
    }
}

// C[M x N] (+)= A[M x 2 K2] B[2 K2 x N] over K2 pairs, N a multiple of 8; the layout of
// gemm_tiles_zmm (column panels of 32, 8-row tiles). accumulate=false overwrites C.
template <class A, class B, class C>
NSA_AVX512BF16 __attribute__((noinline)) void gemm_bf16_tiles(std::int64_t M, std::int64_t N, std::int64_t K2,
                                                              const A& a, const B& b, const C& c,
                                                              bool accumulate = false) {
    if (K2 == 0 && accumulate) return;
    for (std::int64_t j0 = 0; j0 < N; j0 += 32) {
        const std::int64_t width = std::min<std::int64_t>(32, N - j0);  // 8, 16, 24 or 32
        const __mmask16 tail = width % 16 == 0 ? __mmask16(0xFFFF) : __mmask16(0x00FF);
        for (std::int64_t i0 = 0; i0 < M; i0 += kMR512) {
            const int rows = static_cast<int>(std::min<std::int64_t>(kMR512, M - i0));
            const std::uint32_t* ap[kMR512];
            float* cp[kMR512];
            for (int i = 0; i < rows; ++i) {
                ap[i] = a.row(i0 + i);
                cp[i] = c.row(i0 + i);
            }
            if (width > 16)
                micro_bf16_rows<2>(rows, K2, ap, a.cs, b, j0, cp, accumulate, tail);
            else
                micro_bf16_rows<1>(rows, K2, ap, a.cs, b, j0, cp, accumulate, tail);
        }
    }
}

// sum over kk < K2 of the pair products of a and b, the chain one element of gemm_bf16_tiles
// computes (so a row's D = dO . o equals its dP = dO . v bit for bit where o equals v).
NSA_AVX512BF16 __attribute__((noinline)) inline float bf16_pair_dot(const std::uint32_t* a, const std::uint32_t* b,
                                                                   std::int64_t K2) {
    __m512 acc = _mm512_setzero_ps();
    for (std::int64_t kk = 0; kk < K2; ++kk)
        acc = _mm512_dpbf16_ps(acc, (__m512bh)_mm512_set1_epi32(static_cast<int>(a[kk])),
                               (__m512bh)_mm512_set1_epi32(static_cast<int>(b[kk])));
    return _mm512_cvtss_f32(acc);
}

// exp(x): 2^n * P(r), r = x - n ln2 in [-ln2/2, ln2/2], degree-6 polynomial (Cephes expf
// coefficients), about 1 ulp. Fixed instruction sequence: the same bits in every thread and run.
// Non-finite and extreme inputs follow IEEE exp: NaN stays NaN (the clamps take x as their second
// operand, which min/max return when it is NaN), x < -87.34 (exp below the smallest normal, and
// -inf) gives 0, and x > 88.72 saturates near FLT_MAX.
NSA_AVX2 inline __m256 exp_ps(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654f);
    const __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);  // false for NaN
    x = _mm256_max_ps(lo, _mm256_min_ps(_mm256_set1_ps(88.72283f), x));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // 2^n: n in [-126, 128]; split it in two factors so n = 128 does not overflow the exponent.
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i half = _mm256_srai_epi32(ni, 1);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
    const __m256 s2 = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), _mm256_set1_epi32(127)), 23));
    return _mm256_andnot_ps(underflow, _mm256_mul_ps(_mm256_mul_ps(y, s1), s2));
}

// Running max of score vectors that keeps NaN: the max instructions drop a NaN operand, so NaN
// lanes are collected apart and turn the final row max into NaN (docs/spec: NaN is never hidden).
struct NanMax {
    __m256 max, nan;
};
NSA_AVX2 inline NanMax nanmax_init() {
    return {_mm256_set1_ps(-std::numeric_limits<float>::infinity()), _mm256_setzero_ps()};
}
NSA_AVX2 inline void nanmax_add(NanMax& m, __m256 v) {
    m.max = _mm256_max_ps(m.max, v);
    m.nan = _mm256_or_ps(m.nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}

// Lanes [0, 8) whose column index j0 + lane is below `limit`.
NSA_AVX2 inline __m256 lanes_below(std::int64_t j0, std::int64_t limit) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i lim = _mm256_set1_epi32(static_cast<int>(std::clamp<std::int64_t>(limit - j0, -1, 8)));
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(lim, lane));
}

// Fixed-order horizontal reductions.
NSA_AVX2 inline float hsum(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}
NSA_AVX2 inline float hmax(__m256 v) {
    const __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(t, _mm_movehdup_ps(t)));
}
// The row max of a NanMax: NaN when any lane ever saw a NaN.
NSA_AVX2 inline float nanmax_value(const NanMax& m) {
    return _mm256_movemask_ps(m.nan) != 0 ? std::numeric_limits<float>::quiet_NaN() : hmax(m.max);
}

// ---- row conversion (storage dtype <-> fp32), vectorised for contiguous rows -----------------

// 8 storage values at p widened to fp32: exact for every dtype (bf16 is the high half of an fp32,
// fp16 widens with F16C's vcvtph2ps).
template <class S>
NSA_AVX2 inline __m256 load8(const S* p) {
    if constexpr (std::is_same_v<S, float>) {
        return _mm256_loadu_ps(p);
    } else {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        if constexpr (std::is_same_v<S, bf16_t>)
            return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
        else
            return _mm256_cvtph_ps(h);
    }
}

// 8 fp32 values rounded to nearest even into storage at p, bit-identical to store_acc for every
// non-NaN value (a NaN stays a NaN).
template <class S>
NSA_AVX2 inline void store8(S* p, __m256 v) {
    if constexpr (std::is_same_v<S, float>) {
        _mm256_storeu_ps(p, v);
    } else if constexpr (std::is_same_v<S, f16_t>) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    } else {  // bf16: u + 0x7fff + (bit 16 of u), high halves; NaNs made quiet as f32_to_bf16 does
        const __m256i u = _mm256_castps_si256(v);
        const __m256i rounded = bf16_high_halves(v);
        const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        const __m256i quiet = _mm256_or_si256(u, _mm256_set1_epi32(0x00400000));
        const __m256i hi = _mm256_srli_epi32(_mm256_blendv_epi8(rounded, quiet, nan), 16);
        // Pack the 8 high halves into 8 uint16 (values < 2^16, so unsigned saturation is exact).
        const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
    }
}

// 8 elements at p, element stride es (es == 1 when kUnit), widened to fp32 (rows with an inner
// stride other than 1 are read lane by lane).
template <class S, bool kUnit>
NSA_AVX2 inline __m256 load8_strided(const S* p, std::int64_t es) {
    if constexpr (kUnit) {
        (void)es;
        return load8(p);
    } else {
        alignas(32) float v[kLanes];
        for (int i = 0; i < kLanes; ++i) v[i] = load_acc(p + i * es);
        return _mm256_load_ps(v);
    }
}

// Rounds 8 lanes into p, element stride es.
template <class S>
NSA_AVX2 inline void store8_strided(S* p, std::int64_t es, __m256 v) {
    if (es == 1) return store8(p, v);
    alignas(32) float lanes[kLanes];
    _mm256_store_ps(lanes, v);
    for (int i = 0; i < kLanes; ++i) store_acc(p + i * es, lanes[i]);
}

// Row (i, j, :) of a 3-D view of storage S into n fp32 values (any stride; vector loads when
// the row is contiguous).
template <class S>
NSA_AVX2 inline void load_row_f32(const TensorView& t, std::int64_t i, std::int64_t j, float* out, std::int64_t n) {
    if (t.strides[2] != 1) return load_row<S>(t, i, j, out, n);
    const S* src = element<const S>(t, i, j, 0);
    std::int64_t d = 0;
    for (; d + kLanes <= n; d += kLanes) _mm256_storeu_ps(out + d, load8(src + d));
    for (; d < n; ++d) out[d] = load_acc(src + d);
}

// The same, zero-padded from n to np values (the packed rows' vector width).
template <class S>
NSA_AVX2 inline void load_row_padded(const TensorView& t, std::int64_t i, std::int64_t j, float* out, std::int64_t n,
                                     std::int64_t np) {
    load_row_f32<S>(t, i, j, out, n);
    std::fill(out + n, out + np, 0.0f);
}

// n fp32 values times `factor`, rounded into row (i, j, :) of a 3-D view of storage S.
template <class S>
NSA_AVX2 inline void store_row_f32(const TensorView& t, std::int64_t i, std::int64_t j, const float* in, float factor,
                                   std::int64_t n) {
    if (t.strides[2] != 1) return store_row<S>(t, i, j, in, factor, n);
    S* dst = element<S>(t, i, j, 0);
    const __m256 f = _mm256_set1_ps(factor);
    std::int64_t d = 0;
    for (; d + kLanes <= n; d += kLanes) store8(dst + d, _mm256_mul_ps(_mm256_loadu_ps(in + d), f));
    for (; d < n; ++d) store_acc(dst + d, in[d] * factor);
}

// dst[c * ldd + r] = src[r * lds + c] for an 8 x 8 fp32 tile (unpack / shuffle / lane swap).
NSA_AVX2 inline void transpose8x8(const float* src, std::int64_t lds, float* dst, std::int64_t ldd) {
    __m256 r[8], t[8];
    for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; ++i) {
        _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
        _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
}

// One key block of head n as fp32: rows[i][0, Dp) = src[key0 + i, n, :] zero-padded, for
// i < bsp (zero rows past `keys`), and its transpose panel[d][i] = rows[i][d] for d < Dp.
template <class S>
NSA_AVX2 void block_rows_and_panel(const TensorView& src, std::int64_t key0, std::int64_t keys, std::int64_t n,
                                   std::int64_t D, std::int64_t Dp, std::int64_t bsp, float* rows, float* panel) {
    for (std::int64_t i = 0; i < keys; ++i) load_row_padded<S>(src, key0 + i, n, rows + i * Dp, D, Dp);
    std::fill(rows + keys * Dp, rows + bsp * Dp, 0.0f);
    for (std::int64_t i0 = 0; i0 < bsp; i0 += kLanes)
        for (std::int64_t d0 = 0; d0 < Dp; d0 += kLanes) transpose8x8(rows + i0 * Dp + d0, Dp, panel + d0 * bsp + i0, bsp);
}

// Calls fn(tag) with a null pointer of the storage type of an fp16 / bf16 / fp32 problem (the
// fp64 path never comes here).
template <class Fn>
void with_float_storage(DType t, Fn&& fn) {
    with_storage_type(t, [&](auto* tag) {
        if constexpr (!std::is_same_v<std::remove_pointer_t<decltype(tag)>, double>) fn(tag);
    });
}

// ---- packing (plain C++; done once per call or per chunk) ----------------------------------

// out[t][0, Dp) = row (t, n) of src as fp32, zero-padded from D to Dp, for one head n. Tasks of
// 64 rows.
template <class S>
void pack_rows(const TensorView& src, std::int64_t T, std::int64_t n, std::int64_t D, std::int64_t Dp, float* out,
               int threads) {
    constexpr std::int64_t kRows = 64;
    parallel_for((T + kRows - 1) / kRows, threads, [&](std::int64_t task, int) {
        for (std::int64_t t = task * kRows; t < std::min((task + 1) * kRows, T); ++t)
            load_row_padded<S>(src, t, n, out + t * Dp, D, Dp);
    });
}

}  // namespace
}  // namespace opennsa::detail::avx2

#endif  // __x86_64__
