// Forward pass (SPEC.md section 5), generic path.
//
// K and V are first packed per kv head into dense accumulation-type rows (one pass over them,
// whatever their strides and dtype). Tasks are (kv head, chunk of kQueryChunk query tokens): the
// G query heads of a kv head share its selection, so the segments are found once per token.
// Each (token, head) row is computed by exactly one task in a fixed order.
#include <cmath>
#include <limits>
#include <vector>

#include "core/threading.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/pack.hpp"
#include "kernels/portable.hpp"
#include "ops/select_attention/avx2.hpp"
#include "ops/select_attention/passes.hpp"
#include "ops/select_attention/plan.hpp"

namespace opennsa::detail::select_attention {
namespace {

template <class A>
struct PackedKV {
    std::span<A> k, v;  // [N2][T2][Dk], [N2][T2][Dv]
};

template <class A>
PackedKV<A> carve_kv(const Problem& p, Carver& c) {
    return {c.take<A>({p.N2, p.T2, p.Dk}), c.take<A>({p.N2, p.T2, p.Dv})};
}

template <class S>
void forward_impl(const Problem& p, std::span<std::byte> workspace) {
    using A = Accum<S>;
    Carver carver(workspace.data());
    const PackedKV<A> kv = carve_kv<A>(p, carver);
    const int threads = thread_count();
    pack_heads<S>(p.k, p.T2, p.N2, p.Dk, kv.k.data(), threads);
    pack_heads<S>(p.v, p.T2, p.N2, p.Dv, kv.v.data(), threads);

    // Per-thread scratch: a query row, the scores of one row (at most C blocks of block_len
    // keys), an output accumulator, segments.
    const std::int64_t row_scratch =
        checked_add(checked_product({p.C, p.block_len}, "the scores of a row"), p.Dk + p.Dv, "the row scratch");
    std::vector<A> scratch(static_cast<std::size_t>(checked_product({threads, row_scratch}, "the row scratch")));
    std::vector<Segment> segments(static_cast<std::size_t>(threads * p.C));
    const A scale = static_cast<A>(p.scale);
    const std::int64_t chunks = (p.T1 + kQueryChunk - 1) / kQueryChunk;

    parallel_for(chunks * p.N2, threads, [&](std::int64_t task, int worker) {
        const std::int64_t n2 = task % p.N2;
        const std::int64_t t0 = (task / p.N2) * kQueryChunk;
        A* q = scratch.data() + worker * row_scratch;
        A* s = q + p.Dk;
        A* acc = s + p.C * p.block_len;
        Segment* seg = segments.data() + worker * p.C;
        const A* K = kv.k.data() + n2 * p.T2 * p.Dk;
        const A* V = kv.v.data() + n2 * p.T2 * p.Dv;
        for (std::int64_t t = t0; t < std::min(t0 + kQueryChunk, p.T1); ++t) {
            const QueryRow row = locate_query(p, t);
            std::int64_t keys = 0;
            const int nseg = row.batch < 0 ? 0 : collect_segments(p, t, n2, row, seg, &keys);
            for (std::int64_t h = n2 * p.G; h < (n2 + 1) * p.G; ++h) {
                if (keys == 0) {  // padding row or nothing visible: out = max = sum = 0
                    store_zero_row<S>(p.out, t, h, p.Dv);
                    store_stat(p.softmax_max, t, h, 0.0f);
                    store_stat(p.softmax_sum, t, h, 0.0f);
                    continue;
                }
                load_row<S>(p.q, t, h, q, p.Dk);
                A mx = -std::numeric_limits<A>::infinity();
                std::int64_t n = 0;
                for (int g = 0; g < nseg; ++g)
                    for (std::int64_t key = seg[g].begin; key < seg[g].end; ++key, ++n) {
                        s[n] = scale * dot(q, K + key * p.Dk, p.Dk);
                        mx = max_nan(mx, s[n]);
                    }
                A sum = 0;
                for (std::int64_t m = 0; m < n; ++m) {
                    s[m] = std::exp(s[m] - mx);
                    sum += s[m];
                }
                std::fill(acc, acc + p.Dv, A(0));
                n = 0;
                for (int g = 0; g < nseg; ++g)
                    for (std::int64_t key = seg[g].begin; key < seg[g].end; ++key, ++n)
                        axpy(s[n], V + key * p.Dv, acc, p.Dv);
                store_row<S>(p.out, t, h, acc, A(1) / sum, p.Dv);
                store_stat(p.softmax_max, t, h, static_cast<float>(mx));
                store_stat(p.softmax_sum, t, h, static_cast<float>(sum));
            }
        }
    });
}

std::size_t generic_forward_workspace(const Problem& p) {
    return with_storage_type(p.dtype, [&](auto* tag) {
        using A = Accum<std::remove_pointer_t<decltype(tag)>>;
        Carver c;
        carve_kv<A>(p, c);
        return c.size();
    });
}

}  // namespace

std::size_t forward_workspace(const Problem& p, KernelPath path) {
#if defined(__x86_64__)
    if (avx2_serves(p.dtype, path)) return avx2::forward_workspace(p);
#endif
    (void)path;
    return generic_forward_workspace(p);
}

void run_forward(const Problem& p, std::span<std::byte> workspace, KernelPath path) {
#if defined(__x86_64__)
    if (avx2_serves(p.dtype, path)) return avx2::run_forward(p, workspace);
#endif
    (void)path;
    with_storage_type(p.dtype, [&](auto* tag) { forward_impl<std::remove_pointer_t<decltype(tag)>>(p, workspace); });
}

}  // namespace opennsa::detail::select_attention
