// How the compression passes split their work (shared by the generic and the AVX2 passes, so both
// have the same tasks, the same owners of every output element and the same reduction order).
//
// Forward: a task is kOutputRowsPerTask consecutive compressed rows (all heads); it reads their
// windows and writes its rows. Backward: a task is a run of consecutive input rows (all heads). It
// owns those rows of inputGrad and gathers them from the windows that cover them, and it owns the
// weight-gradient terms of its rows (the term of window c, position r belongs to input row
// s_b + c*d + r), which it sums into its own [l, N] partial in the workspace. The partials are
// then added in task order. Task lists depend on the problem alone, never on the thread count, so
// the results are the same bits for every thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>

#include "core/checked.hpp"
#include "core/rows.hpp"
#include "core/threading.hpp"
#include "core/workspace.hpp"
#include "ops/compress/problem.hpp"

namespace opennsa::detail::compress {

inline constexpr std::int64_t kOutputRowsPerTask = 16;
inline constexpr std::int64_t kInputRowsPerTask = 64;
// The weight-gradient partials hold at most this many elements (16 MiB in fp32), unless a single
// [l, N] partial is larger: tasks grow beyond kInputRowsPerTask rows when T / 64 partials would
// not fit (large l * N).
inline constexpr std::int64_t kPartialElements = std::int64_t{1} << 22;

struct BackwardPlan {
    std::int64_t rows_per_task = kInputRowsPerTask;
    std::int64_t tasks = 0;
    // Rows of each [partial_rows, N] partial: l, or 0 when no window fits (Tc = 0: weightGrad is 0).
    // Never a nominal l: when Tc > 0, l <= the longest batch <= T, the rows of inputGradOut.
    std::int64_t partial_rows = 0;
};

inline BackwardPlan backward_plan(const Problem& p) {
    BackwardPlan plan;
    plan.partial_rows = p.Tc > 0 ? p.l : 0;
    const std::int64_t per_task = checked_product({plan.partial_rows, p.N}, "the weight-gradient partial");
    const std::int64_t max_tasks = per_task == 0 ? p.T : std::max<std::int64_t>(1, kPartialElements / per_task);
    if (ceil_div(p.T, plan.rows_per_task) > max_tasks) plan.rows_per_task = ceil_div(p.T, max_tasks);
    plan.tasks = ceil_div(p.T, plan.rows_per_task);
    return plan;
}

// The workspace of the backward: one [l, N] partial per task, in the accumulation type A.
template <class A>
std::span<A> carve_partials(const Problem& p, const BackwardPlan& plan, Carver& c) {
    return c.take<A>({plan.tasks, plan.partial_rows, p.N});
}

// The batch of compressed row o (o < Tc): the last b with out[b] <= o (empty batches skipped).
inline std::int64_t batch_of_output(const Batches& b, std::int64_t o) {
    return static_cast<std::int64_t>(std::upper_bound(b.out.begin(), b.out.end(), o) - b.out.begin()) - 1;
}
// The batch of input row t, or count() for rows past the last batch.
inline std::int64_t batch_of_input(const Batches& b, std::int64_t t) {
    return static_cast<std::int64_t>(std::upper_bound(b.in.begin(), b.in.end(), t) - b.in.begin()) - 1;
}

// The windows c of a batch with C windows that cover position pos of the batch:
// c*d <= pos < c*d + l, 0 <= c < C. Empty (first > last) for rows no window covers.
struct Cover {
    std::int64_t first = 0, last = -1;
};
inline Cover windows_covering(std::int64_t pos, std::int64_t C, std::int64_t l, std::int64_t d) noexcept {
    Cover cv;
    cv.first = pos >= l ? (pos - l) / d + 1 : 0;
    cv.last = std::min(pos / d, C - 1);
    return cv;
}

// Walks the input rows [t0, t1) of a backward task: fn(t, batch, cover) for rows some window
// covers, zero(t) for the others (padding rows, short batches, batch tails).
template <class Covered, class Uncovered>
void for_each_input_row(const Problem& p, std::int64_t t0, std::int64_t t1, Covered&& fn, Uncovered&& zero) {
    const Batches& b = p.batches;
    std::int64_t batch = batch_of_input(b, t0);
    for (std::int64_t t = t0; t < t1; ++t) {
        while (batch < b.count() && t >= b.in[batch + 1]) ++batch;
        if (batch >= b.count()) {
            zero(t);
            continue;
        }
        const Cover cv = windows_covering(t - b.in[batch], b.compressed(batch), p.l, p.d);
        if (cv.first > cv.last)
            zero(t);
        else
            fn(t, batch, cv);
    }
}

// Walks the compressed rows [o0, o1) of a forward task: fn(o, first input row of its window).
template <class Fn>
void for_each_output_row(const Problem& p, std::int64_t o0, std::int64_t o1, Fn&& fn) {
    const Batches& b = p.batches;
    std::int64_t batch = batch_of_output(b, o0);
    for (std::int64_t o = o0; o < o1; ++o) {
        while (o >= b.out[batch + 1]) ++batch;
        fn(o, b.in[batch] + (o - b.out[batch]) * p.d);
    }
}

// weightGradOut[r, h] = the sum of the tasks' partials, in task order, rounded once (0 when no
// window fits).
template <class S>
void reduce_weight_grad(const Problem& p, const BackwardPlan& plan, const Accum<S>* partials, int threads) {
    using A = Accum<S>;
    if (plan.partial_rows == 0) return zero_view(p.weight_grad);
    constexpr std::int64_t kRows = 64;
    const std::int64_t slab = p.l * p.N;
    parallel_for(ceil_div(p.l, kRows), threads, [&](std::int64_t task, int) {
        for (std::int64_t r = task * kRows; r < std::min(p.l, (task + 1) * kRows); ++r)
            for (std::int64_t h = 0; h < p.N; ++h) {
                A s = A(0);
                for (std::int64_t k = 0; k < plan.tasks; ++k) s += partials[k * slab + r * p.N + h];
                store_acc(element<S>(p.weight_grad, r, h), s);
            }
    });
}

}  // namespace opennsa::detail::compress
