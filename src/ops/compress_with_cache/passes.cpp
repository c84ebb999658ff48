// The generic (portable) pass of the decoding compression, and the choice of path. Plain loops in
// the accumulation type (fp32, fp64 for fp64) with the tasks of plan.hpp; each element is summed
// over the window in ascending r, as the training compression's generic pass does, so a cache
// row is the same bits as training's output row on the same path.
#include "ops/compress_with_cache/passes.hpp"

#include <algorithm>
#include <type_traits>

#include "core/rows.hpp"
#include "core/threading.hpp"
#include "ops/compress_with_cache/avx2.hpp"
#include "ops/compress_with_cache/plan.hpp"

namespace opennsa::detail::compress_with_cache {
namespace {

template <class S>
void run_generic(const Problem& p) {
    using A = Accum<S>;
    const std::int64_t es = p.input.elem_stride(), os = p.cache.strides[2];
    parallel_for(task_count(p), thread_count(), [&](std::int64_t index, int) {
        const Task t = task_at(p, index);
        A acc[kElemsPerTask];
        const std::int64_t n = t.e1 - t.e0;
        std::fill(acc, acc + n, A(0));
        WindowRows<const S> rows(p, t.batch, t.head);
        for (std::int64_t r = 0; r < p.l; ++r, rows.next()) {
            const A w = load_acc(element<const S>(p.weight, r, t.head));
            const S* src = rows.row() + t.e0 * es;
            for (std::int64_t e = 0; e < n; ++e) acc[e] += w * load_acc(src + e * es);
        }
        S* dst = element<S>(p.cache, p.slot(t.batch), t.head, t.e0);
        for (std::int64_t e = 0; e < n; ++e) store_acc(dst + e * os, acc[e]);
    });
}

}  // namespace

void run(const Problem& p, KernelPath path) {
#if defined(__x86_64__)
    if (avx2_serves(p.dtype, path)) return avx2::run(p);
#endif
    (void)path;
    with_storage_type(p.dtype, [&](auto* tag) { run_generic<std::remove_pointer_t<decltype(tag)>>(p); });
}

}  // namespace opennsa::detail::compress_with_cache
