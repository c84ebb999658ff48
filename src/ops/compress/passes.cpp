// The generic (portable) passes of the compression, and the choice of path. Plain loops in the
// accumulation type (fp32, fp64 for fp64), with the tasks and reduction order of plan.hpp.
#include "ops/compress/passes.hpp"

#include <type_traits>
#include <vector>

#include "kernels/portable.hpp"
#include "ops/compress/avx2.hpp"
#include "ops/compress/plan.hpp"

namespace opennsa::detail::compress {
namespace {

template <class S>
Accum<S> weight_at(const Problem& p, std::int64_t r, std::int64_t h) {
    return load_acc(element<const S>(p.weight, r, h));
}

template <class S>
void forward_generic(const Problem& p) {
    using A = Accum<S>;
    const int threads = thread_count();
    const std::int64_t D = p.D, es = p.input.strides[2];
    std::vector<A> scratch(static_cast<std::size_t>(checked_product({threads, D}, "the row scratch")));
    parallel_for(ceil_div(p.Tc, kOutputRowsPerTask), threads, [&](std::int64_t task, int worker) {
        A* acc = scratch.data() + worker * D;
        const std::int64_t o0 = task * kOutputRowsPerTask, o1 = std::min(p.Tc, o0 + kOutputRowsPerTask);
        for_each_output_row(p, o0, o1, [&](std::int64_t o, std::int64_t t0) {
            for (std::int64_t h = 0; h < p.N; ++h) {
                std::fill(acc, acc + D, A(0));
                for (std::int64_t r = 0; r < p.l; ++r) {
                    const A w = weight_at<S>(p, r, h);
                    const S* src = element<const S>(p.input, t0 + r, h, 0);
                    for (std::int64_t e = 0; e < D; ++e) acc[e] += w * load_acc(src + e * es);
                }
                store_row<S>(p.output, o, h, acc, A(1), D);
            }
        });
    });
}

template <class S>
void backward_generic(const Problem& p, std::span<std::byte> workspace) {
    using A = Accum<S>;
    const int threads = thread_count();
    const BackwardPlan plan = backward_plan(p);
    Carver carver(workspace.data());
    A* partials = carve_partials<A>(p, plan, carver).data();
    const std::int64_t D = p.D, slab = plan.partial_rows * p.N;
    // Per worker: the input row, one outputGrad row and the inputGrad accumulator.
    std::vector<A> scratch(static_cast<std::size_t>(checked_product({threads, 3, D}, "the row scratch")));
    parallel_for(plan.tasks, threads, [&](std::int64_t task, int worker) {
        A* x = scratch.data() + worker * 3 * D;
        A* g = x + D;
        A* acc = g + D;
        A* part = partials + task * slab;
        std::fill(part, part + slab, A(0));
        const std::int64_t t0 = task * plan.rows_per_task, t1 = std::min(p.T, t0 + plan.rows_per_task);
        for_each_input_row(
            p, t0, t1,
            [&](std::int64_t t, std::int64_t batch, Cover cv) {
                const std::int64_t pos = t - p.batches.in[batch], o_b = p.batches.out[batch];
                for (std::int64_t h = 0; h < p.N; ++h) {
                    load_row<S>(p.input, t, h, x, D);
                    std::fill(acc, acc + D, A(0));
                    for (std::int64_t c = cv.first; c <= cv.last; ++c) {
                        const std::int64_t r = pos - c * p.d;
                        load_row<S>(p.output_grad, o_b + c, h, g, D);
                        axpy(weight_at<S>(p, r, h), g, acc, D);
                        part[r * p.N + h] += dot(g, x, D);
                    }
                    store_row<S>(p.input_grad, t, h, acc, A(1), D);
                }
            },
            [&](std::int64_t t) {
                for (std::int64_t h = 0; h < p.N; ++h) store_zero_row<S>(p.input_grad, t, h, D);
            });
    });
    reduce_weight_grad<S>(p, plan, partials, threads);
}

}  // namespace

std::size_t forward_workspace(const Problem&, KernelPath) { return 0; }

void run_forward(const Problem& p, std::span<std::byte>, KernelPath path) {
#if defined(__x86_64__)
    if (avx2_serves(p.dtype, path)) return avx2::run_forward(p);
#endif
    (void)path;
    with_storage_type(p.dtype, [&](auto* tag) { forward_generic<std::remove_pointer_t<decltype(tag)>>(p); });
}

std::size_t backward_workspace(const Problem& p, KernelPath) {
    // Both paths carve the same partials, in the accumulation type of the dtype.
    return with_storage_type(p.dtype, [&](auto* tag) {
        using S = std::remove_pointer_t<decltype(tag)>;
        Carver c;
        carve_partials<Accum<S>>(p, backward_plan(p), c);
        return c.size();
    });
}

void run_backward(const Problem& p, std::span<std::byte> workspace, KernelPath path) {
#if defined(__x86_64__)
    if (avx2_serves(p.dtype, path)) return avx2::run_backward(p, workspace);
#endif
    (void)path;
    with_storage_type(p.dtype,
                      [&](auto* tag) { backward_generic<std::remove_pointer_t<decltype(tag)>>(p, workspace); });
}

}  // namespace opennsa::detail::compress
