// The decoding compression's AVX2 + FMA pass. Same tasks as the generic pass (plan.hpp). Per task
// the block of up to 64 elements is held in up to 8 ymm accumulators; each window row is widened
// and FMA'd in (r = 0 .. l-1), then the block is rounded once into the slot: per element the same
// fp32 FMA chain as the training compression's AVX2 forward, so the cache row has its bits.
// The l rows of a task sit in up to ceil(l / P) + 1 pages anywhere in the cache; they are
// prefetched before the sum so their loads overlap (a decoding step reads little, but cold).
#include "ops/compress_with_cache/avx2.hpp"

#if defined(__x86_64__)
#include <cmath>
#include <type_traits>

#include "core/threading.hpp"
#include "ops/compress_with_cache/plan.hpp"
#include "kernels/avx2/core.hpp"

namespace opennsa::detail::compress_with_cache::avx2 {
namespace {

using namespace opennsa::detail::avx2;

// One task: NV full vectors of 8 elements, then n % 8 single elements (scalar FMA chains).
template <class S, bool kUnit, int NV>
NSA_AVX2 void window_block(const Problem& p, const Task& t) {
    const std::int64_t es = p.input.elem_stride(), n = t.e1 - t.e0;
    __m256 acc[NV > 0 ? NV : 1];
    for (int k = 0; k < NV; ++k) acc[k] = _mm256_setzero_ps();
    float tail[kLanes - 1] = {};
    const std::int64_t tail_n = n - NV * kLanes;
    WindowRows<const S> rows(p, t.batch, t.head);
    for (std::int64_t r = 0; r < p.l; ++r, rows.next()) {
        const float wr = load_acc(element<const S>(p.weight, r, t.head));
        const __m256 w = _mm256_set1_ps(wr);
        const S* src = rows.row() + t.e0 * es;
        for (int k = 0; k < NV; ++k) acc[k] = _mm256_fmadd_ps(w, load8_strided<S, kUnit>(src + k * kLanes * es, es), acc[k]);
        for (std::int64_t i = 0; i < tail_n; ++i) tail[i] = std::fma(wr, load_acc(src + (NV * kLanes + i) * es), tail[i]);
    }
    S* dst = element<S>(p.cache, p.slot(t.batch), t.head, t.e0);
    const std::int64_t os = p.cache.strides[2];
    for (int k = 0; k < NV; ++k) store8_strided(dst + k * kLanes * os, os, acc[k]);
    for (std::int64_t i = 0; i < tail_n; ++i) store_acc(dst + (NV * kLanes + i) * os, tail[i]);
}

// Asks for the task's window rows ahead of the sum: rows of different pages (and of other
// batches' tasks) are independent, so their misses overlap instead of following one another.
template <class S>
inline void prefetch_window(const Problem& p, const Task& t) {
    constexpr std::int64_t kLine = 64 / static_cast<std::int64_t>(sizeof(S));
    const std::int64_t n = t.e1 - t.e0;
    WindowRows<const S> rows(p, t.batch, t.head);
    for (std::int64_t r = 0; r < p.l; ++r, rows.next()) {
        const S* src = rows.row() + t.e0;
        // An asm statement, not _mm_prefetch: GCC may delete a loop of bare prefetches as free of
        // side effects.
        for (std::int64_t e = 0; e < n; e += kLine) asm volatile("prefetcht0 (%0)" : : "r"(src + e));
        asm volatile("prefetcht0 (%0)" : : "r"(src + n - 1));
    }
}

template <class S, bool kUnit>
void run_typed(const Problem& p) {
    parallel_for(task_count(p), thread_count(), [&](std::int64_t index, int) {
        const Task t = task_at(p, index);
        if constexpr (kUnit) prefetch_window<S>(p, t);
        switch ((t.e1 - t.e0) / kLanes) {
            case 8: return window_block<S, kUnit, 8>(p, t);
            case 7: return window_block<S, kUnit, 7>(p, t);
            case 6: return window_block<S, kUnit, 6>(p, t);
            case 5: return window_block<S, kUnit, 5>(p, t);
            case 4: return window_block<S, kUnit, 4>(p, t);
            case 3: return window_block<S, kUnit, 3>(p, t);
            case 2: return window_block<S, kUnit, 2>(p, t);
            case 1: return window_block<S, kUnit, 1>(p, t);
            default: return window_block<S, kUnit, 0>(p, t);
        }
    });
}

}  // namespace

void run(const Problem& p) {
    const bool unit = p.input.elem_stride() == 1;
    with_storage_type(p.dtype, [&](auto* tag) {
        using S = std::remove_pointer_t<decltype(tag)>;
        if constexpr (!std::is_same_v<S, double>) {
            if (unit)
                run_typed<S, true>(p);
            else
                run_typed<S, false>(p);
        }
    });
}

}  // namespace opennsa::detail::compress_with_cache::avx2
#endif  // __x86_64__
