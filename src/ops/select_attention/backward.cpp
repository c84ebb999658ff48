// Backward pass (SPEC.md section 6), generic path, in two passes that each own their outputs:
//
//   0. D[t, h] = dot(dO[t, h], o[t, h]) for every valid row; K and V packed per kv head.
//   1. dQ pass, task = (kv head, chunk of query tokens): recompute s, P from the stored max/sum,
//      dP = dO . v, dS = P (dP - D), dq = scale * sum dS k.
//   2. dK/dV pass, task = (kv head, key block): walk the query tokens that selected the block
//      (reverse index, in increasing t), recompute P and dS, accumulate dk, dv for the block's
//      rows in fp32 scratch, round once. Key rows in no batch get zeros.
//
// No atomics; every output row is reduced by one task in a fixed order, so results are the
// same bits for any thread count.
#include <cmath>
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
struct BackwardWorkspace {
    std::span<A> k, v;   // packed [N2][T2][Dk], [N2][T2][Dv]
    std::span<A> delta;  // D, [T1][N1]
    ReverseIndex index;
};

template <class A>
BackwardWorkspace<A> carve_backward(const Problem& p, std::int64_t blocks, Carver& c) {
    BackwardWorkspace<A> w;
    w.k = c.take<A>({p.N2, p.T2, p.Dk});
    w.v = c.take<A>({p.N2, p.T2, p.Dv});
    w.delta = c.take<A>({p.T1, p.N1});
    w.index.offsets = c.take<std::int64_t>(checked_add(checked_product({p.N2, blocks}, "the reverse index"), 1,
                                                       "the reverse index"));
    w.index.rows = c.take<std::int64_t>({p.T1, p.N2, p.C});  // at most one entry per slot
    return w;
}

// Everything a (query token, head) row contributes with, loaded once.
template <class A>
struct RowState {
    A* q;   // [Dk]
    A* dO;  // [Dv]
    A max, inv_sum, delta;
};

template <class S>
void load_row_state(const Problem& p, const std::span<Accum<S>> delta, std::int64_t t, std::int64_t h,
                    RowState<Accum<S>>& r) {
    using A = Accum<S>;
    load_row<S>(p.q, t, h, r.q, p.Dk);
    load_row<S>(p.out_grad, t, h, r.dO, p.Dv);
    r.max = static_cast<A>(*element<const float>(p.softmax_max, t, h, 0));
    r.inv_sum = A(1) / static_cast<A>(*element<const float>(p.softmax_sum, t, h, 0));
    r.delta = delta[static_cast<std::size_t>(t * p.N1 + h)];
}

template <class S>
void backward_impl(const Problem& p, std::span<std::byte> workspace) {
    using A = Accum<S>;
    const KeyBlocks blocks = make_key_blocks(p);
    const std::int64_t nb = blocks.total();
    Carver carver(workspace.data());
    BackwardWorkspace<A> ws = carve_backward<A>(p, nb, carver);
    const int threads = thread_count();
    const A scale = static_cast<A>(p.scale);

    // --- 0. packing, D, reverse index -------------------------------------------------------
    pack_heads<S>(p.k, p.T2, p.N2, p.Dk, ws.k.data(), threads);
    pack_heads<S>(p.v, p.T2, p.N2, p.Dv, ws.v.data(), threads);
    const std::int64_t valid = p.batches.valid_queries();
    const std::int64_t chunks = (p.T1 + kQueryChunk - 1) / kQueryChunk;
    // Per-thread rows: [o | dO] for D, then [dq accumulator | q | dO] in the dQ pass.
    const std::int64_t row_scratch = 2 * (p.Dk + p.Dv);
    std::vector<A> rows_scratch(static_cast<std::size_t>(threads * row_scratch));
    parallel_for((valid + kQueryChunk - 1) / kQueryChunk, threads, [&](std::int64_t task, int worker) {
        A* o = rows_scratch.data() + worker * row_scratch;
        A* dO = o + p.Dv;
        for (std::int64_t t = task * kQueryChunk; t < std::min((task + 1) * kQueryChunk, valid); ++t)
            for (std::int64_t h = 0; h < p.N1; ++h) {
                load_row<S>(p.out, t, h, o, p.Dv);
                load_row<S>(p.out_grad, t, h, dO, p.Dv);
                ws.delta[static_cast<std::size_t>(t * p.N1 + h)] = dot(dO, o, p.Dv);
            }
    });
    build_reverse_index(p, blocks, ws.index, threads);

    // --- 1. dQ pass --------------------------------------------------------------------------
    std::vector<Segment> segments(static_cast<std::size_t>(threads * p.C));
    parallel_for(chunks * p.N2, threads, [&](std::int64_t task, int worker) {
        const std::int64_t n2 = task % p.N2;
        const std::int64_t t0 = (task / p.N2) * kQueryChunk;
        A* acc = rows_scratch.data() + worker * row_scratch;
        RowState<A> r{acc + p.Dk, acc + 2 * p.Dk, 0, 0, 0};
        Segment* seg = segments.data() + worker * p.C;
        const A* K = ws.k.data() + n2 * p.T2 * p.Dk;
        const A* V = ws.v.data() + n2 * p.T2 * p.Dv;
        for (std::int64_t t = t0; t < std::min(t0 + kQueryChunk, p.T1); ++t) {
            const QueryRow row = locate_query(p, t);
            std::int64_t keys = 0;
            const int nseg = row.batch < 0 ? 0 : collect_segments(p, t, n2, row, seg, &keys);
            for (std::int64_t h = n2 * p.G; h < (n2 + 1) * p.G; ++h) {
                if (keys == 0) {  // padding row or nothing visible
                    store_zero_row<S>(p.dq, t, h, p.Dk);
                    continue;
                }
                load_row_state<S>(p, ws.delta, t, h, r);
                std::fill(acc, acc + p.Dk, A(0));
                for (int g = 0; g < nseg; ++g)
                    for (std::int64_t key = seg[g].begin; key < seg[g].end; ++key) {
                        const A* k = K + key * p.Dk;
                        const A P = std::exp(scale * dot(r.q, k, p.Dk) - r.max) * r.inv_sum;
                        const A dS = P * (dot(r.dO, V + key * p.Dv, p.Dv) - r.delta);
                        axpy(dS, k, acc, p.Dk);
                    }
                store_row<S>(p.dq, t, h, acc, scale, p.Dk);
            }
        }
    });

    // --- 2. dK/dV pass -----------------------------------------------------------------------
    const std::int64_t block_scratch = checked_product({p.block_len + 1, p.Dk + p.Dv}, "the block scratch");
    std::vector<A> block_acc(static_cast<std::size_t>(checked_product({threads, block_scratch}, "the block scratch")));
    parallel_for(nb * p.N2, threads, [&](std::int64_t task, int worker) {
        const std::int64_t n2 = task / nb;
        const std::int64_t gb = task % nb;
        const KeyBlock blk = locate_block(p, blocks, gb);
        const std::int64_t b = blk.batch, x = blk.x, rows = blk.keys;
        const std::int64_t kv0 = p.batches.kv[b];
        A* dk = block_acc.data() + worker * block_scratch;
        A* dv = dk + p.block_len * p.Dk;
        RowState<A> r{dv + p.block_len * p.Dv, dv + p.block_len * p.Dv + p.Dk, 0, 0, 0};
        std::fill(dk, dk + p.block_len * (p.Dk + p.Dv), A(0));
        const A* K = ws.k.data() + n2 * p.T2 * p.Dk;
        const A* V = ws.v.data() + n2 * p.T2 * p.Dv;
        for (const std::int64_t t : ws.index.of(n2, nb, gb)) {
            const QueryRow row{b, t - p.batches.q[b], kv0, p.batches.key_count(b)};
            const Segment seg = visible_part(p, row, x);
            for (std::int64_t h = n2 * p.G; h < (n2 + 1) * p.G; ++h) {
                load_row_state<S>(p, ws.delta, t, h, r);
                for (std::int64_t pos = seg.begin; pos < seg.end; ++pos) {
                    const A* k = K + (kv0 + pos) * p.Dk;
                    const std::int64_t i = pos - x * p.bs;
                    const A P = std::exp(scale * dot(r.q, k, p.Dk) - r.max) * r.inv_sum;
                    const A dS = P * (dot(r.dO, V + (kv0 + pos) * p.Dv, p.Dv) - r.delta);
                    axpy(P, r.dO, dv + i * p.Dv, p.Dv);
                    axpy(scale * dS, r.q, dk + i * p.Dk, p.Dk);
                }
            }
        }
        for (std::int64_t i = 0; i < rows; ++i) {
            store_row<S>(p.dk, kv0 + x * p.bs + i, n2, dk + i * p.Dk, A(1), p.Dk);
            store_row<S>(p.dv, kv0 + x * p.bs + i, n2, dv + i * p.Dv, A(1), p.Dv);
        }
    });
    // Key rows past the last batch belong to no block.
    for (std::int64_t t = p.batches.valid_keys(); t < p.T2; ++t)
        for (std::int64_t n2 = 0; n2 < p.N2; ++n2) {
            store_zero_row<S>(p.dk, t, n2, p.Dk);
            store_zero_row<S>(p.dv, t, n2, p.Dv);
        }
}

std::size_t generic_backward_workspace(const Problem& p) {
    const std::int64_t blocks = make_key_blocks(p).total();
    return with_storage_type(p.dtype, [&](auto* tag) {
        using A = Accum<std::remove_pointer_t<decltype(tag)>>;
        Carver c;
        carve_backward<A>(p, blocks, c);
        return c.size();
    });
}

}  // namespace

std::size_t backward_workspace(const Problem& p, KernelPath path) {
#if defined(__x86_64__)
    if (avx2_serves(p.dtype, path)) return avx2::backward_workspace(p);
#endif
    (void)path;
    return generic_backward_workspace(p);
}

void run_backward(const Problem& p, std::span<std::byte> workspace, KernelPath path) {
#if defined(__x86_64__)
    if (avx2_serves(p.dtype, path)) return avx2::run_backward(p, workspace);
#endif
    (void)path;
    with_storage_type(p.dtype, [&](auto* tag) { backward_impl<std::remove_pointer_t<decltype(tag)>>(p, workspace); });
}

}  // namespace opennsa::detail::select_attention
