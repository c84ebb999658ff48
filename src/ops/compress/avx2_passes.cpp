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
// Rows with an inner stride other than 1 are read lane by lane (the same order of operations).
#include "ops/compress/avx2.hpp"

#if defined(__x86_64__)
#include <cmath>
#include <vector>

#include "ops/compress/plan.hpp"
#include "kernels/avx2/core.hpp"

namespace opennsa::detail::compress::avx2 {
namespace {

using namespace opennsa::detail::avx2;

// 8 elements at p, element stride es (es == 1 when kUnit), widened to fp32.
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

// One (window, head) of the forward, elements [e0, e0 + 8*NV): acc[k] = sum_r w[r] * row_r.
template <class S, bool kUnit, int NV>
NSA_AVX2 inline void window_block(const Problem& p, std::int64_t t0, std::int64_t h, std::int64_t e0, std::int64_t o) {
    const std::int64_t rs = p.input.strides[0], es = p.input.strides[2];
    const S* row = element<const S>(p.input, t0, h, e0);
    __m256 acc[NV];
    for (int k = 0; k < NV; ++k) acc[k] = _mm256_setzero_ps();
    for (std::int64_t r = 0; r < p.l; ++r, row += rs) {
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

template <class S, bool kUnit>
void forward_typed(const Problem& p) {
    parallel_for(ceil_div(p.Tc, kOutputRowsPerTask), thread_count(), [&](std::int64_t task, int) {
        const std::int64_t o0 = task * kOutputRowsPerTask, o1 = std::min(p.Tc, o0 + kOutputRowsPerTask);
        for_each_output_row(p, o0, o1, [&](std::int64_t o, std::int64_t t0) {
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

template <class S>
void backward_typed(const Problem& p, std::span<std::byte> workspace) {
    const int threads = thread_count();
    const BackwardPlan plan = backward_plan(p);
    Carver carver(workspace.data());
    float* partials = carve_partials<float>(p, plan, carver).data();
    const std::int64_t D = p.D, slab = plan.partial_rows * p.N;
    const bool g_unit = p.output_grad.strides[2] == 1;
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
                for (std::int64_t h = 0; h < p.N; ++h) {
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
