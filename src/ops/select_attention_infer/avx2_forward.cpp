// The decoding selected attention, AVX2 + FMA path. Same rows, chunks, sub-blocks and folds as the
// generic pass (plan.hpp). Per sub-block of up to 128 keys: the keys' and values' cached rows are
// gathered through the block table into fp32 rows (the one read of the selected bytes), then
//   S^T [n x Gp] = K [n x Dk] Q^T [Dk x Gp]      (the G heads are the matmul's columns)
//   per head: max, e = exp(s - max), sum         (vectors across heads, keys in ascending order)
//   O [G x Dvp] = E [G x n] V [n x Dvp]
// with the register-tiled microkernel, so every cached row is loaded once for all G heads.
#include "ops/select_attention_infer/avx2.hpp"

#if defined(__x86_64__)
#include <cmath>
#include <limits>
#include <vector>

#include "ops/select_attention_infer/plan.hpp"
#include "kernels/avx2/core.hpp"

namespace opennsa::detail::select_attention_infer::avx2 {
namespace {

using namespace opennsa::detail::avx2;

// n elements `stride` apart as fp32, zero-padded to np (vector loads for contiguous rows).
template <class S>
NSA_AVX2 inline void load_padded(const S* src, std::int64_t stride, float* out, std::int64_t n, std::int64_t np) {
    std::int64_t d = 0;
    if (stride == 1)
        for (; d + kLanes <= n; d += kLanes) _mm256_storeu_ps(out + d, load8(src + d));
    for (; d < n; ++d) out[d] = load_acc(src + d * stride);
    std::fill(out + n, out + np, 0.0f);
}

// n fp32 values times `factor`, rounded once into elements `stride` apart.
template <class S>
NSA_AVX2 inline void store_scaled(S* dst, std::int64_t stride, const float* in, float factor, std::int64_t n) {
    std::int64_t d = 0;
    if (stride == 1) {
        const __m256 f = _mm256_set1_ps(factor);
        for (; d + kLanes <= n; d += kLanes) store8(dst + d, _mm256_mul_ps(_mm256_loadu_ps(in + d), f));
    }
    for (; d < n; ++d) store_acc(dst + d * stride, in[d] * factor);
}

// Lane-wise max that keeps NaN, and the shift exp uses: a max of -inf (every score -inf) shifts by
// 0, so its exponentials are exactly 0 instead of exp(-inf + inf) = NaN.
NSA_AVX2 inline __m256 nan_keeping_max(__m256 max, __m256 nan_mask) {
    return _mm256_blendv_ps(max, _mm256_set1_ps(std::numeric_limits<float>::quiet_NaN()), nan_mask);
}
NSA_AVX2 inline __m256 exp_shift(__m256 m) {
    const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    return _mm256_blendv_ps(m, _mm256_setzero_ps(), _mm256_cmp_ps(m, ninf, _CMP_EQ_OQ));
}

template <class S>
struct Kernel {
    const Problem& p;
    PartialLayout<float> layout;
    std::int64_t Gp, Dkp, Dvp;
    int nthreads;
    std::int64_t per_worker;
    std::vector<float> scratch;  // per worker: qt [Dk][Gp], k [n][Dkp], v [n][Dvp], st [n][Gp], sub, fa, fb, qrow
    std::vector<std::int64_t> positions;

    Kernel(const Problem& pr, int threads)
        : p(pr), layout{pr.G, tiles::padded(pr.G), tiles::padded(pr.Dv)}, Gp(tiles::padded(pr.G)),
          Dkp(tiles::padded(pr.Dk)), Dvp(tiles::padded(pr.Dv)), nthreads(threads) {
        const std::int64_t rows = checked_product({kSubBlockKeys, checked_add(Dkp, Dvp + Gp, "the row scratch")},
                                                  "the row scratch");
        per_worker = checked_add(checked_add(checked_product({p.Dk, Gp}, "the row scratch"), rows, "the row scratch"),
                                 checked_add(layout.size(), 2 * Gp + Dkp, "the row scratch"), "the row scratch");
        scratch.resize(static_cast<std::size_t>(checked_product({threads, per_worker}, "the row scratch")));
        positions.resize(static_cast<std::size_t>(threads * kSubBlockKeys));
    }
    int threads() const { return nthreads; }
    std::int64_t partial_size() const { return layout.size(); }
    float* qt(int w) { return scratch.data() + w * per_worker; }
    float* kc(int w) { return qt(w) + p.Dk * Gp; }
    float* vc(int w) { return kc(w) + kSubBlockKeys * Dkp; }
    float* st(int w) { return vc(w) + kSubBlockKeys * Dvp; }
    float* sub(int w) { return st(w) + kSubBlockKeys * Gp; }
    std::int64_t* positions_of(int w) { return positions.data() + w * kSubBlockKeys; }
    float* fa(int w) { return sub(w) + layout.size(); }
    float* fb(int w) { return fa(w) + Gp; }
    float* qrow(int w) { return fb(w) + Gp; }

    // Q^T of the row's G heads: qt[d][g], zero columns past G.
    NSA_AVX2 void begin_row(int w, std::int64_t b, std::int64_t s, std::int64_t n2) {
        float* t = qt(w);
        std::fill(t, t + p.Dk * Gp, 0.0f);
        for (std::int64_t g = 0; g < p.G; ++g) {
            load_padded(p.q.at<const S>(p.first, b, s, n2 * p.G + g), p.q.elem, qrow(w), p.Dk, Dkp);
            for (std::int64_t d = 0; d < p.Dk; ++d) t[d * Gp + g] = qrow(w)[d];
        }
    }

    NSA_AVX2 void subblock(int w, std::int64_t b, std::int64_t n2, const std::int64_t* pos, std::int64_t n,
                           float* part) {
        float* K = kc(w);
        float* V = vc(w);
        float* T = st(w);
        for (std::int64_t i = 0; i < n; ++i) {
            const std::int64_t page = p.table.at(b, pos[i] / p.key.page_size), r = pos[i] % p.key.page_size;
            load_padded(p.key.row<const S>(page, r, n2), p.key.elem_stride(), K + i * Dkp, p.Dk, Dkp);
            load_padded(p.value.row<const S>(page, r, n2), p.value.elem_stride(), V + i * Dvp, p.Dv, Dvp);
        }
        gemm_tiles(n, Gp, p.Dk, StridedA{K, Dkp, 1}, StridedB{qt(w), Gp}, StridedC{T, Gp}, false);
        const __m256 scale = _mm256_set1_ps(static_cast<float>(p.scale));
        for (std::int64_t g0 = 0; g0 < Gp; g0 += kLanes) {
            NanMax mx = nanmax_init();
            for (std::int64_t i = 0; i < n; ++i) {
                float* at = T + i * Gp + g0;
                const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(at), scale);
                _mm256_storeu_ps(at, v);
                nanmax_add(mx, v);
            }
            const __m256 m = nan_keeping_max(mx.max, mx.nan);
            const __m256 shift = exp_shift(m);
            __m256 sum = _mm256_setzero_ps();
            for (std::int64_t i = 0; i < n; ++i) {
                float* at = T + i * Gp + g0;
                const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(at), shift));
                _mm256_storeu_ps(at, e);
                sum = _mm256_add_ps(sum, e);
            }
            _mm256_storeu_ps(layout.m(part) + g0, m);
            _mm256_storeu_ps(layout.l(part) + g0, sum);
        }
        gemm_tiles(p.G, Dvp, n, StridedA{T, 1, Gp}, StridedB{V, Dvp}, StridedC{layout.o(part), Dvp}, false);
        PartialLayout<float>::count(part) = static_cast<float>(n);
    }

    // acc <- fold(acc, part): the common max M, factors exp(m - M), then l and o rescaled and added.
    NSA_AVX2 void combine(int w, float* acc, const float* part) {
        const float pc = PartialLayout<float>::count(part);
        if (pc == 0) return;
        if (PartialLayout<float>::count(acc) == 0) {
            std::copy(part, part + layout.size(), acc);
            return;
        }
        float* fa_ = fa(w);
        float* fb_ = fb(w);
        for (std::int64_t g0 = 0; g0 < Gp; g0 += kLanes) {
            const __m256 a = _mm256_loadu_ps(layout.m(acc) + g0), b = _mm256_loadu_ps(layout.m(part) + g0);
            const __m256 nan = _mm256_or_ps(_mm256_cmp_ps(a, a, _CMP_UNORD_Q), _mm256_cmp_ps(b, b, _CMP_UNORD_Q));
            const __m256 m = nan_keeping_max(_mm256_max_ps(a, b), nan);
            const __m256 shift = exp_shift(m);
            const __m256 xa = exp_ps(_mm256_sub_ps(a, shift)), xb = exp_ps(_mm256_sub_ps(b, shift));
            const __m256 l = _mm256_fmadd_ps(xa, _mm256_loadu_ps(layout.l(acc) + g0),
                                             _mm256_mul_ps(xb, _mm256_loadu_ps(layout.l(part) + g0)));
            _mm256_storeu_ps(layout.m(acc) + g0, m);
            _mm256_storeu_ps(layout.l(acc) + g0, l);
            _mm256_storeu_ps(fa_ + g0, xa);
            _mm256_storeu_ps(fb_ + g0, xb);
        }
        for (std::int64_t g = 0; g < p.G; ++g) {
            float* o = layout.o(acc) + g * Dvp;
            const float* po = layout.o(part) + g * Dvp;
            const __m256 xa = _mm256_set1_ps(fa_[g]), xb = _mm256_set1_ps(fb_[g]);
            for (std::int64_t e = 0; e < Dvp; e += kLanes)
                _mm256_storeu_ps(o + e, _mm256_fmadd_ps(xa, _mm256_loadu_ps(o + e),
                                                        _mm256_mul_ps(xb, _mm256_loadu_ps(po + e))));
        }
        PartialLayout<float>::count(acc) += pc;
    }

    NSA_AVX2 void store(int, std::int64_t b, std::int64_t s, std::int64_t n2, const float* acc) {
        const bool empty = PartialLayout<float>::count(acc) == 0;
        for (std::int64_t g = 0; g < p.G; ++g) {
            S* dst = p.out.at<S>(p.first, b, s, n2 * p.G + g);
            if (empty) {
                for (std::int64_t e = 0; e < p.Dv; ++e) store_acc(dst + e * p.out.elem, 0.0f);
                continue;
            }
            // A row whose scores are all -inf has sum 0: 0 x inf = NaN, as the reference gives.
            store_scaled(dst, p.out.elem, layout.o(acc) + g * Dvp, 1.0f / layout.l(acc)[g], p.Dv);
        }
    }
};

template <class S>
void forward_typed(const Problem& p, std::span<std::byte> workspace) {
    const Split split = make_split(p);
    Kernel<S> kernel(p, thread_count());
    Carver carver(workspace.data());
    const std::span<float> partials = carve_partials<float>(split, kernel.layout, carver);
    run_rows<float>(p, split, partials, kernel);
}

}  // namespace

std::size_t forward_workspace(const Problem& p) {
    Carver c;
    carve_partials<float>(make_split(p), PartialLayout<float>{p.G, tiles::padded(p.G), tiles::padded(p.Dv)}, c);
    return c.size();
}

void run_forward(const Problem& p, std::span<std::byte> workspace) {
    with_float_storage(p.dtype, [&](auto* tag) { forward_typed<std::remove_pointer_t<decltype(tag)>>(p, workspace); });
}

}  // namespace opennsa::detail::select_attention_infer::avx2

#endif  // __x86_64__
