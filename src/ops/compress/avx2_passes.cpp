// The compression's AVX2 + FMA passes. Same tasks as the generic passes (plan.hpp); per row the
// work is vectorised over D.
//
// Forward, per (compressed row, head): D in blocks of up to 64 fp32 lanes held in 8 ymm
// accumulators; for each block the l window rows are widened and FMA'd in (r = 0 .. l-1), then
// the block is rounded once into the output. The window rows of neighbouring compressed rows
// overlap (l > d), so after the first touch they come from cache: the pass streams the input once.
// Backward, per (input row, head): the input row is widened once; for each covering window c
// (ascending) the outputGrad row is read once and serves both the inputGrad accumulation
// (acc += w[r, h] * g) and the weight-gradient term dot(g, x).
// When the rows are contiguous and at most 4 windows cover the row (l <= 4d), the inputGrad block
// stays in registers across the windows (gather_row_blocked); otherwise it is accumulated in an
// fp32 row (gather_window). Rows with an inner stride other than 1 are read lane by lane.
#include "ops/compress/avx2.hpp"

#if defined(__x86_64__)
#include <cmath>
#include <vector>

#include "ops/compress/plan.hpp"
#include "kernels/avx2/core.hpp"

namespace opennsa::detail::compress::avx2 {
namespace {

using namespace opennsa::detail::avx2;

// One (window, head) of the forward, elements [e0, e0 + 8*NV): acc[k] = sum_r w[r] * row_r.
template <class S, bool kUnit, int NV>
NSA_AVX2 inline void window_block(const Problem& p, std::int64_t t0, std::int64_t h, std::int64_t e0, std::int64_t o) {
    const std::int64_t es = p.input.strides[2];
    __m256 acc[NV];
    for (int k = 0; k < NV; ++k) acc[k] = _mm256_setzero_ps();
    for (std::int64_t r = 0; r < p.l; ++r) {
        // Each row's address from its index: stepping on past the last row could leave the
        // address space (a dimension of one row may have any stride).
        const S* row = element<const S>(p.input, t0 + r, h, e0);
        const __m256 w = _mm256_set1_ps(load_acc(element<const S>(p.weight, r, h)));
        for (int k = 0; k < NV; ++k)
            acc[k] = _mm256_fmadd_ps(w, load8_strided<S, kUnit>(row + k * kLanes * es, es), acc[k]);
    }
    S* dst = element<S>(p.output, o, h, e0);
    const std::int64_t os = p.output.strides[2];
    for (int k = 0; k < NV; ++k) store8_strided(dst + k * kLanes * os, os, acc[k]);
}

// The same for one element e (the D % 8 tail).
template <class S>
NSA_AVX2 inline void window_element(const Problem& p, std::int64_t t0, std::int64_t h, std::int64_t e, std::int64_t o) {
    const S* src = element<const S>(p.input, t0, h, e);
    float acc = 0.0f;
    for (std::int64_t r = 0; r < p.l; ++r)
        acc = std::fma(load_acc(element<const S>(p.weight, r, h)), load_acc(src + r * p.input.strides[0]), acc);
    store_acc(element<S>(p.output, o, h, e), acc);
}

template <class S, bool kUnit>
NSA_AVX2 void window_row(const Problem& p, std::int64_t t0, std::int64_t h, std::int64_t o) {
    constexpr std::int64_t kBlock = 8 * kLanes;
    std::int64_t e = 0;
    for (; e + kBlock <= p.D; e += kBlock) window_block<S, kUnit, 8>(p, t0, h, e, o);
    switch ((p.D - e) / kLanes) {
        case 7: window_block<S, kUnit, 7>(p, t0, h, e, o); break;
        case 6: window_block<S, kUnit, 6>(p, t0, h, e, o); break;
        case 5: window_block<S, kUnit, 5>(p, t0, h, e, o); break;
        case 4: window_block<S, kUnit, 4>(p, t0, h, e, o); break;
        case 3: window_block<S, kUnit, 3>(p, t0, h, e, o); break;
        case 2: window_block<S, kUnit, 2>(p, t0, h, e, o); break;
        case 1: window_block<S, kUnit, 1>(p, t0, h, e, o); break;
        default: break;
    }
    for (e += (p.D - e) / kLanes * kLanes; e < p.D; ++e) window_element<S>(p, t0, h, e, o);
}

// Asks for the rows [t0, t1) of the input (every head) ahead of their use. The windows read their
// rows with a stride of one row per step, which the hardware prefetchers follow poorly once the
// input is larger than the cache; the rows the next window adds are fetched while this one is
// summed. Contiguous rows only (others take the lane-by-lane path, where it matters less).
template <class S>
inline void prefetch_rows(const Problem& p, std::int64_t t0, std::int64_t t1) {
    constexpr std::int64_t kLine = 64 / sizeof(S);
    for (std::int64_t t = t0; t < std::min(t1, p.T); ++t)
        for (std::int64_t h = 0; h < p.N; ++h) {
            const S* row = element<const S>(p.input, t, h, 0);
            // An asm statement, not _mm_prefetch: GCC 12 deletes a loop nest of bare prefetches as
            // free of side effects (checked: no prefetcht0 in the object code).
            for (std::int64_t e = 0; e < p.D; e += kLine) asm volatile("prefetcht0 (%0)" : : "r"(row + e));
        }
}

template <class S, bool kUnit>
void forward_typed(const Problem& p) {
    parallel_for(ceil_div(p.Tc, kOutputRowsPerTask), thread_count(), [&](std::int64_t task, int) {
        const std::int64_t o0 = task * kOutputRowsPerTask, o1 = std::min(p.Tc, o0 + kOutputRowsPerTask);
        for_each_output_row(p, o0, o1, [&](std::int64_t o, std::int64_t t0) {
            if constexpr (kUnit) prefetch_rows<S>(p, t0 + p.l, t0 + p.l + p.d);
            for (std::int64_t h = 0; h < p.N; ++h) window_row<S, kUnit>(p, t0, h, o);
        });
    });
}

// One covering window of the backward, for one (input row, head): acc += w * g over D and the
// weight-gradient term dot(g, x), four independent partial sums in a fixed order.
template <class G>
NSA_AVX2 float gather_window(const G* g, const float* x, float w, float* acc, std::int64_t D) {
    const __m256 vw = _mm256_set1_ps(w);
    __m256 d0 = _mm256_setzero_ps(), d1 = d0, d2 = d0, d3 = d0;
    std::int64_t e = 0;
    for (; e + 4 * kLanes <= D; e += 4 * kLanes) {
        const __m256 g0 = load8(g + e), g1 = load8(g + e + 8), g2 = load8(g + e + 16), g3 = load8(g + e + 24);
        _mm256_storeu_ps(acc + e, _mm256_fmadd_ps(vw, g0, _mm256_loadu_ps(acc + e)));
        _mm256_storeu_ps(acc + e + 8, _mm256_fmadd_ps(vw, g1, _mm256_loadu_ps(acc + e + 8)));
        _mm256_storeu_ps(acc + e + 16, _mm256_fmadd_ps(vw, g2, _mm256_loadu_ps(acc + e + 16)));
        _mm256_storeu_ps(acc + e + 24, _mm256_fmadd_ps(vw, g3, _mm256_loadu_ps(acc + e + 24)));
        d0 = _mm256_fmadd_ps(g0, _mm256_loadu_ps(x + e), d0);
        d1 = _mm256_fmadd_ps(g1, _mm256_loadu_ps(x + e + 8), d1);
        d2 = _mm256_fmadd_ps(g2, _mm256_loadu_ps(x + e + 16), d2);
        d3 = _mm256_fmadd_ps(g3, _mm256_loadu_ps(x + e + 24), d3);
    }
    for (; e + kLanes <= D; e += kLanes) {
        const __m256 g0 = load8(g + e);
        _mm256_storeu_ps(acc + e, _mm256_fmadd_ps(vw, g0, _mm256_loadu_ps(acc + e)));
        d0 = _mm256_fmadd_ps(g0, _mm256_loadu_ps(x + e), d0);
    }
    float tail = 0.0f;
    for (; e < D; ++e) {
        const float gv = load_acc(g + e);
        acc[e] = std::fma(w, gv, acc[e]);
        tail = std::fma(gv, x[e], tail);
    }
    return hsum(_mm256_add_ps(_mm256_add_ps(d0, d1), _mm256_add_ps(d2, d3))) + tail;
}

// The common case of the backward: contiguous rows and at most kRegWindows covering windows
// (l <= 4d). D in blocks of 16 lanes; the inputGrad block stays in registers across the windows
// and is rounded straight into the output, and each window's dot(g, x) keeps two register
// accumulators. dots[j] receives window j's weight-gradient term.
inline constexpr int kRegWindows = 4;

template <class S, int M>
NSA_AVX2 void gather_row_blocked(const S* x, const S* const* g, const float* w, S* dst, std::int64_t D, float* dots) {
    __m256 dot[M][2];
    for (int j = 0; j < M; ++j) dot[j][0] = dot[j][1] = _mm256_setzero_ps();
    std::int64_t e = 0;
    for (; e + 2 * kLanes <= D; e += 2 * kLanes) {
        const __m256 x0 = load8(x + e), x1 = load8(x + e + kLanes);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        for (int j = 0; j < M; ++j) {
            const __m256 vw = _mm256_broadcast_ss(w + j);
            const __m256 g0 = load8(g[j] + e), g1 = load8(g[j] + e + kLanes);
            a0 = _mm256_fmadd_ps(vw, g0, a0);
            a1 = _mm256_fmadd_ps(vw, g1, a1);
            dot[j][0] = _mm256_fmadd_ps(g0, x0, dot[j][0]);
            dot[j][1] = _mm256_fmadd_ps(g1, x1, dot[j][1]);
        }
        store8(dst + e, a0);
        store8(dst + e + kLanes, a1);
    }
    if (e + kLanes <= D) {
        const __m256 x0 = load8(x + e);
        __m256 a0 = _mm256_setzero_ps();
        for (int j = 0; j < M; ++j) {
            const __m256 g0 = load8(g[j] + e);
            a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(w + j), g0, a0);
            dot[j][0] = _mm256_fmadd_ps(g0, x0, dot[j][0]);
        }
        store8(dst + e, a0);
        e += kLanes;
    }
    float tail[M] = {};
    for (; e < D; ++e) {
        const float xv = load_acc(x + e);
        float a = 0.0f;
        for (int j = 0; j < M; ++j) {
            const float gv = load_acc(g[j] + e);
            a = std::fma(w[j], gv, a);
            tail[j] = std::fma(gv, xv, tail[j]);
        }
        store_acc(dst + e, a);
    }
    for (int j = 0; j < M; ++j) dots[j] = hsum(_mm256_add_ps(dot[j][0], dot[j][1])) + tail[j];
}

template <class S>
NSA_AVX2 void gather_row_blocked(int m, const S* x, const S* const* g, const float* w, S* dst, std::int64_t D,
                                 float* dots) {
    switch (m) {
        case 1: return gather_row_blocked<S, 1>(x, g, w, dst, D, dots);
        case 2: return gather_row_blocked<S, 2>(x, g, w, dst, D, dots);
        case 3: return gather_row_blocked<S, 3>(x, g, w, dst, D, dots);
        default: return gather_row_blocked<S, 4>(x, g, w, dst, D, dots);
    }
}

template <class S>
void backward_typed(const Problem& p, std::span<std::byte> workspace) {
    const int threads = thread_count();
    const BackwardPlan plan = backward_plan(p);
    Carver carver(workspace.data());
    float* partials = carve_partials<float>(p, plan, carver).data();
    const std::int64_t D = p.D, slab = plan.partial_rows * p.N;
    const bool g_unit = p.output_grad.strides[2] == 1;
    const bool all_unit = g_unit && p.input.strides[2] == 1 && p.input_grad.strides[2] == 1;
    // Per worker: the widened input row, the inputGrad accumulator and (for an outputGrad whose
    // rows are not contiguous) one widened outputGrad row.
    std::vector<float> scratch(static_cast<std::size_t>(checked_product({threads, 3, D}, "the row scratch")));
    parallel_for(plan.tasks, threads, [&](std::int64_t task, int worker) {
        float* x = scratch.data() + worker * 3 * D;
        float* acc = x + D;
        float* gbuf = acc + D;
        float* part = partials + task * slab;
        std::fill(part, part + slab, 0.0f);
        const std::int64_t t0 = task * plan.rows_per_task, t1 = std::min(p.T, t0 + plan.rows_per_task);
        for_each_input_row(
            p, t0, t1,
            [&](std::int64_t t, std::int64_t batch, Cover cv) {
                const std::int64_t pos = t - p.batches.in[batch], o_b = p.batches.out[batch];
                const std::int64_t m = cv.last - cv.first + 1;
                for (std::int64_t h = 0; h < p.N; ++h) {
                    if (all_unit && m <= kRegWindows) {
                        const S* g[kRegWindows];
                        float w[kRegWindows], dots[kRegWindows];
                        for (std::int64_t j = 0; j < m; ++j) {
                            g[j] = element<const S>(p.output_grad, o_b + cv.first + j, h, 0);
                            w[j] = load_acc(element<const S>(p.weight, pos - (cv.first + j) * p.d, h));
                        }
                        gather_row_blocked<S>(static_cast<int>(m), element<const S>(p.input, t, h, 0), g, w,
                                              element<S>(p.input_grad, t, h, 0), D, dots);
                        for (std::int64_t j = 0; j < m; ++j) part[(pos - (cv.first + j) * p.d) * p.N + h] += dots[j];
                        continue;
                    }
                    load_row_f32<S>(p.input, t, h, x, D);
                    std::fill(acc, acc + D, 0.0f);
                    for (std::int64_t c = cv.first; c <= cv.last; ++c) {
                        const std::int64_t r = pos - c * p.d;
                        const float w = load_acc(element<const S>(p.weight, r, h));
                        float term;
                        if (g_unit) {
                            term = gather_window(element<const S>(p.output_grad, o_b + c, h, 0), x, w, acc, D);
                        } else {
                            load_row_f32<S>(p.output_grad, o_b + c, h, gbuf, D);
                            term = gather_window(static_cast<const float*>(gbuf), x, w, acc, D);
                        }
                        part[r * p.N + h] += term;
                    }
                    store_row_f32<S>(p.input_grad, t, h, acc, 1.0f, D);
                }
            },
            [&](std::int64_t t) {
                for (std::int64_t h = 0; h < p.N; ++h) store_zero_row<S>(p.input_grad, t, h, D);
            });
    });
    reduce_weight_grad<S>(p, plan, partials, threads);
}

}  // namespace

void run_forward(const Problem& p) {
    with_float_storage(p.dtype, [&](auto* tag) {
        using S = std::remove_pointer_t<decltype(tag)>;
        if (p.input.strides[2] == 1)
            forward_typed<S, true>(p);
        else
            forward_typed<S, false>(p);
    });
}

void run_backward(const Problem& p, std::span<std::byte> workspace) {
    with_float_storage(p.dtype,
                       [&](auto* tag) { backward_typed<std::remove_pointer_t<decltype(tag)>>(p, workspace); });
}

}  // namespace opennsa::detail::compress::avx2

#endif  // __x86_64__
