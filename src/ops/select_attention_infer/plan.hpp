// How a validated Problem is cut into work, shared by the generic and the AVX2 pass. Everything
// here depends on the problem only, never on the thread count, so the arithmetic of every output
// element is fixed:
//
// - A row is (batch b, query token s < Q_b, kv head n2); its G query heads share the slot list.
// - A row's k slots form chunks of `slots_per_chunk` consecutive slots; a chunk's visible keys are
//   taken in sub-blocks of at most kSubBlockKeys (slot order, duplicates kept). Each sub-block
//   gives a softmax partial (count, max, sum, unnormalised output), folded into its chunk's
//   partial, and the chunks' partials are folded in chunk order (split-K with a fixed-order merge).
// - Execution: with many rows a task is a row (its chunks folded in the task); with few rows
//   (batch 1) a task is (row, chunk) with the partials in the workspace, merged by a second pass.
//   Both run the same folds in the same order, so the bits do not depend on which one ran.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/threading.hpp"
#include "core/workspace.hpp"
#include "ops/select_attention_infer/problem.hpp"

namespace opennsa::detail::select_attention_infer {

inline constexpr std::int64_t kSubBlockKeys = 128;  // keys gathered per sub-block (scratch rows)
inline constexpr std::int64_t kChunkKeys = 128;     // keys a chunk aims at: 2 slots of l' = 64
inline constexpr std::int64_t kMaxChunks = 32;      // chunks per row at most (bounds the workspace)
inline constexpr std::int64_t kSplitRows = 64;      // fewer rows than this: (row, chunk) tasks

struct Split {
    std::int64_t slots_per_chunk = 1, chunks = 1;
    std::int64_t rows = 0;  // (b, s, n2) rows
    bool by_chunk = false;  // tasks are (row, chunk), partials in the workspace
};

inline Split make_split(const Problem& p) {
    Split s;
    s.slots_per_chunk = std::max<std::int64_t>(1, kChunkKeys / p.block_len);
    s.slots_per_chunk = std::min(std::max(s.slots_per_chunk, ceil_div(p.sel_count, kMaxChunks)), p.sel_count);
    s.chunks = ceil_div(p.sel_count, s.slots_per_chunk);
    s.rows = checked_product({p.tokens(), p.N2}, "the rows of the problem");
    s.by_chunk = s.rows < kSplitRows && s.chunks > 1;
    return s;
}

// A softmax partial of G heads in A elements: key count, then per head max m, sum l (padded to
// Gp lanes), then the unnormalised outputs o [G][Dvp].
template <class A>
struct PartialLayout {
    std::int64_t G, Gp, Dvp;
    std::int64_t size() const { return checked_add(8 + 2 * Gp, checked_product({G, Dvp}, "a partial"), "a partial"); }
    template <class P>  // P: A or const A
    static P& count(P* base) { return base[0]; }
    template <class P>
    P* m(P* base) const { return base + 8; }
    template <class P>
    P* l(P* base) const { return base + 8 + Gp; }
    template <class P>
    P* o(P* base) const { return base + 8 + 2 * Gp; }
};

// Calls fn(positions, n) for each sub-block of chunk c of row (b, s, n2): the raw positions it
// sees, in slot order, at most kSubBlockKeys at a time. `buf` holds kSubBlockKeys entries.
template <class Fn>
void for_each_subblock(const Problem& p, const Split& split, std::int64_t b, std::int64_t s, std::int64_t n2,
                       std::int64_t c, std::int64_t* buf, Fn&& fn) {
    const std::int64_t end = p.visible_end(b, s);
    std::int64_t n = 0;
    const std::int64_t j_end = std::min(p.sel_count, (c + 1) * split.slots_per_chunk);
    for (std::int64_t j = c * split.slots_per_chunk; j < j_end; ++j) {
        const std::int64_t x = p.slot(b, s, n2, j);
        if (x < 0) continue;
        const std::int64_t begin = x * p.sel_len;  // < L_b for a checked x: no overflow
        const std::int64_t stop = std::min(end, begin + std::min(p.sel_len, p.kv_len[static_cast<std::size_t>(b)] - begin));
        for (std::int64_t pos = begin; pos < stop; ++pos) {
            buf[n++] = pos;
            if (n == kSubBlockKeys) {
                fn(static_cast<const std::int64_t*>(buf), n);
                n = 0;
            }
        }
    }
    if (n > 0) fn(static_cast<const std::int64_t*>(buf), n);
}

// The workspace of a call: the (row, chunk) partials when tasks are by chunk, else nothing.
template <class A>
std::span<A> carve_partials(const Split& split, const PartialLayout<A>& layout, Carver& c) {
    if (!split.by_chunk) return {};
    return c.take<A>({split.rows, split.chunks, layout.size()});
}

// Runs the folds of every row. Kernel (per-worker state indexed by `worker`):
//   begin_row(worker, b, s, n2)                  prepares the row's query heads
//   subblock(worker, b, n2, positions, n, part)  part <- the partial of n keys (n >= 1)
//   combine(worker, A* acc, const A* part)       acc <- fold(acc, part)
//   store(worker, b, s, n2, const A* acc)        the G output rows, rounded once (zeros for count 0)
//   positions_of(worker) (kSubBlockKeys entries), sub(worker) (a partial), partial_size(), threads()
template <class A, class Kernel>
void fold_chunk(const Problem& p, const Split& split, Kernel& k, int w, std::int64_t b, std::int64_t s, std::int64_t n2,
                std::int64_t c, A* part) {
    PartialLayout<A>::count(part) = 0;  // a chunk that sees nothing
    for_each_subblock(p, split, b, s, n2, c, k.positions_of(w), [&](const std::int64_t* pos, std::int64_t n) {
        const bool first = PartialLayout<A>::count(part) == 0;
        k.subblock(w, b, n2, pos, n, first ? part : k.sub(w));
        if (!first) k.combine(w, part, k.sub(w));
    });
}

template <class A, class Kernel>
void run_rows(const Problem& p, const Split& split, std::span<A> partials, Kernel& k) {
    const int threads = k.threads();
    const std::int64_t ps = k.partial_size();
    auto locate = [&](std::int64_t row, std::int64_t* b, std::int64_t* s, std::int64_t* n2) {
        p.locate(row / p.N2, b, s);
        *n2 = row % p.N2;
    };
    if (split.by_chunk) {
        parallel_for(split.rows * split.chunks, threads, [&](std::int64_t task, int worker) {
            std::int64_t b = 0, s = 0, n2 = 0;
            const std::int64_t row = task / split.chunks, c = task % split.chunks;
            locate(row, &b, &s, &n2);
            k.begin_row(worker, b, s, n2);
            fold_chunk<A>(p, split, k, worker, b, s, n2, c, partials.data() + task * ps);
        });
        parallel_for(split.rows, threads, [&](std::int64_t row, int worker) {
            std::int64_t b = 0, s = 0, n2 = 0;
            locate(row, &b, &s, &n2);
            A* acc = partials.data() + row * split.chunks * ps;
            for (std::int64_t c = 1; c < split.chunks; ++c) k.combine(worker, acc, acc + c * ps);
            k.store(worker, b, s, n2, acc);
        });
        return;
    }
    std::vector<A> scratch(static_cast<std::size_t>(checked_product({threads, 2, ps}, "the partials scratch")));
    parallel_for(split.rows, threads, [&](std::int64_t row, int worker) {
        std::int64_t b = 0, s = 0, n2 = 0;
        locate(row, &b, &s, &n2);
        A* acc = scratch.data() + worker * 2 * ps;
        A* part = acc + ps;
        k.begin_row(worker, b, s, n2);
        fold_chunk<A>(p, split, k, worker, b, s, n2, 0, acc);
        for (std::int64_t c = 1; c < split.chunks; ++c) {
            fold_chunk<A>(p, split, k, worker, b, s, n2, c, part);
            k.combine(worker, acc, part);
        }
        k.store(worker, b, s, n2, acc);
    });
}

}  // namespace opennsa::detail::select_attention_infer
