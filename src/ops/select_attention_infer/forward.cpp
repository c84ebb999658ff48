// The decoding selected attention, generic path (any float dtype; fp64 accumulates in fp64), and
// the choice of path. Work split and folds: plan.hpp.
#include <cmath>
#include <limits>
#include <vector>

#include "core/rows.hpp"
#include "kernels/portable.hpp"
#include "ops/select_attention_infer/avx2.hpp"
#include "ops/select_attention_infer/passes.hpp"
#include "ops/select_attention_infer/plan.hpp"

namespace opennsa::detail::select_attention_infer {
namespace {

template <class S>
struct GenericKernel {
    using A = Accum<S>;
    const Problem& p;
    PartialLayout<A> layout;
    int nthreads;
    std::int64_t per_worker;
    std::vector<A> scratch;             // per worker: q [G][Dk], k [n][Dk], v [n][Dv], s [n][G], sub partial
    std::vector<std::int64_t> positions;  // per worker: kSubBlockKeys

    GenericKernel(const Problem& pr, int threads)
        : p(pr), layout{pr.G, pr.G, pr.Dv}, nthreads(threads) {
        per_worker = checked_add(
            checked_product({p.G + kSubBlockKeys, p.Dk}, "the row scratch"),
            checked_add(checked_product({kSubBlockKeys, p.Dv + p.G}, "the row scratch"), layout.size(), "the row scratch"),
            "the row scratch");
        scratch.resize(static_cast<std::size_t>(checked_product({threads, per_worker}, "the row scratch")));
        positions.resize(static_cast<std::size_t>(threads * kSubBlockKeys));
    }
    int threads() const { return nthreads; }
    std::int64_t partial_size() const { return layout.size(); }
    A* q(int w) { return scratch.data() + w * per_worker; }
    A* kc(int w) { return q(w) + p.G * p.Dk; }
    A* vc(int w) { return kc(w) + kSubBlockKeys * p.Dk; }
    A* sc(int w) { return vc(w) + kSubBlockKeys * p.Dv; }
    A* sub(int w) { return sc(w) + kSubBlockKeys * p.G; }
    std::int64_t* positions_of(int w) { return positions.data() + w * kSubBlockKeys; }

    static void load(const S* src, std::int64_t stride, A* out, std::int64_t n) {
        for (std::int64_t e = 0; e < n; ++e) out[e] = load_acc(src + e * stride);
    }

    void begin_row(int w, std::int64_t b, std::int64_t s, std::int64_t n2) {
        for (std::int64_t g = 0; g < p.G; ++g)
            load(p.q.at<const S>(p.first, b, s, n2 * p.G + g), p.q.elem, q(w) + g * p.Dk, p.Dk);
    }

    // The partial of n keys at `pos`.
    void subblock(int w, std::int64_t b, std::int64_t n2, const std::int64_t* pos, std::int64_t n, A* part) {
        A* K = kc(w);
        A* V = vc(w);
        A* sv = sc(w);
        for (std::int64_t i = 0; i < n; ++i) {
            const std::int64_t page = p.table.at(b, pos[i] / p.key.page_size), r = pos[i] % p.key.page_size;
            load(p.key.row<const S>(page, r, n2), p.key.elem_stride(), K + i * p.Dk, p.Dk);
            load(p.value.row<const S>(page, r, n2), p.value.elem_stride(), V + i * p.Dv, p.Dv);
        }
        const A scale = static_cast<A>(p.scale);
        A* m = layout.m(part);
        A* l = layout.l(part);
        A* o = layout.o(part);
        for (std::int64_t g = 0; g < p.G; ++g) {
            A mx = -std::numeric_limits<A>::infinity();
            for (std::int64_t i = 0; i < n; ++i) {
                sv[i * p.G + g] = scale * dot(q(w) + g * p.Dk, K + i * p.Dk, p.Dk);
                mx = max_nan(mx, sv[i * p.G + g]);
            }
            // A sub-block whose scores are all -inf contributes nothing (exp of -inf is 0); the
            // fold then sees max -inf and sum 0.
            const A shift = mx == -std::numeric_limits<A>::infinity() ? A(0) : mx;
            A sum = 0;
            A* og = o + g * p.Dv;
            std::fill(og, og + p.Dv, A(0));
            for (std::int64_t i = 0; i < n; ++i) {
                const A e = std::exp(sv[i * p.G + g] - shift);
                sum += e;
                axpy(e, V + i * p.Dv, og, p.Dv);
            }
            m[g] = mx;
            l[g] = sum;
        }
        PartialLayout<A>::count(part) = static_cast<A>(n);
    }

    void combine(int, A* acc, const A* part) {
        const A pc = PartialLayout<A>::count(part);
        if (pc == 0) return;
        if (PartialLayout<A>::count(acc) == 0) {
            std::copy(part, part + layout.size(), acc);
            return;
        }
        A* m = layout.m(acc);
        A* l = layout.l(acc);
        A* o = layout.o(acc);
        const A* pm = layout.m(part);
        const A* pl = layout.l(part);
        const A* po = layout.o(part);
        for (std::int64_t g = 0; g < p.G; ++g) {
            const A mx = max_nan(m[g], pm[g]);
            const A shift = mx == -std::numeric_limits<A>::infinity() ? A(0) : mx;
            const A fa = std::exp(m[g] - shift), fb = std::exp(pm[g] - shift);
            l[g] = fa * l[g] + fb * pl[g];
            for (std::int64_t e = 0; e < p.Dv; ++e) o[g * p.Dv + e] = fa * o[g * p.Dv + e] + fb * po[g * p.Dv + e];
            m[g] = mx;
        }
        PartialLayout<A>::count(acc) += pc;
    }

    void store(int, std::int64_t b, std::int64_t s, std::int64_t n2, const A* acc) {
        const bool empty = PartialLayout<A>::count(acc) == 0;
        for (std::int64_t g = 0; g < p.G; ++g) {
            S* dst = p.out.at<S>(p.first, b, s, n2 * p.G + g);
            // A row that sees keys but whose scores are all -inf has sum 0: 0 x inf = NaN, as the
            // reference's exp(-inf - -inf) gives.
            const A inv = empty ? A(0) : A(1) / layout.l(acc)[g];
            const A* o = layout.o(acc) + g * p.Dv;
            for (std::int64_t e = 0; e < p.Dv; ++e) store_acc(dst + e * p.out.elem, empty ? A(0) : o[e] * inv);
        }
    }
};

template <class S>
void generic_forward(const Problem& p, std::span<std::byte> workspace) {
    using A = Accum<S>;
    const Split split = make_split(p);
    GenericKernel<S> kernel(p, thread_count());
    Carver carver(workspace.data());
    const std::span<A> partials = carve_partials<A>(split, kernel.layout, carver);
    run_rows<A>(p, split, partials, kernel);
}

std::size_t generic_workspace(const Problem& p) {
    return with_storage_type(p.dtype, [&](auto* tag) {
        using A = Accum<std::remove_pointer_t<decltype(tag)>>;
        Carver c;
        carve_partials<A>(make_split(p), PartialLayout<A>{p.G, p.G, p.Dv}, c);
        return c.size();
    });
}

}  // namespace

std::size_t forward_workspace(const Problem& p, KernelPath path) {
#if defined(__x86_64__)
    if (avx2_serves(p.dtype, path)) return avx2::forward_workspace(p);
#endif
    (void)path;
    return generic_workspace(p);
}

void run_forward(const Problem& p, std::span<std::byte> workspace, KernelPath path) {
#if defined(__x86_64__)
    if (avx2_serves(p.dtype, path)) return avx2::run_forward(p, workspace);
#endif
    (void)path;
    with_storage_type(p.dtype, [&](auto* tag) { generic_forward<std::remove_pointer_t<decltype(tag)>>(p, workspace); });
}

void zero_padding_rows(const Problem& p) {
    if (p.layout == Layout::tnd) return;
    with_storage_type(p.dtype, [&](auto* tag) {
        using S = std::remove_pointer_t<decltype(tag)>;
        for (std::int64_t b = 0; b < p.B; ++b)
            for (std::int64_t s = p.q_len[static_cast<std::size_t>(b)]; s < p.Q; ++s)
                for (std::int64_t h = 0; h < p.N1; ++h) {
                    S* dst = p.out.at<S>(p.first, b, s, h);
                    for (std::int64_t e = 0; e < p.Dv; ++e) store_acc(dst + e * p.out.elem, Accum<S>(0));
                }
    });
}

}  // namespace opennsa::detail::select_attention_infer
