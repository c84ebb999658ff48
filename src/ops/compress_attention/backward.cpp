// Backward pass (docs/spec/compress_attention.md section 8), generic path, and the dispatch: a
// dense masked attention backward with the stored statistics, in two passes that each own their
// outputs:
//
//   0. D[t, h] = dot(dO[t, h], out[t, h]) for every valid row; K and V packed per kv head.
//   1. dQ pass, task = (query tile, kv head): recompute s and P = exp(s - max) / sum from the
//      stored statistics, dP = dO . v, dS = P (dP - D), dq = scale * sum dS k.
//   2. dK/dV pass, task = (run of kKeyTile compressed keys of a batch, kv head): walk the batch's
//      query rows that see each key, recompute P and dS, accumulate dv += P dO and
//      dk += scale dS q in scratch, round once. Compressed rows past the last batch get zeros.
//
// A row whose stored sum is 0 (it saw nothing) contributes nothing. No atomics; every output row
// is reduced by one task in a fixed order, so results are the same bits for any thread count.
#include <cmath>
#include <vector>

#include "core/threading.hpp"
#include "core/workspace.hpp"
#include "kernels/pack.hpp"
#include "kernels/portable.hpp"
#include "ops/compress_attention/avx2.hpp"
#include "ops/compress_attention/passes.hpp"

namespace opennsa::detail::compress_attention {
namespace {

constexpr std::int64_t kTileTokens = 8;  // query tokens per dQ task
constexpr std::int64_t kKeyTile = 16;    // compressed keys per dK/dV task

template <class A>
struct BackwardWorkspace {
    std::span<A> k, v;   // packed [N2][valid keys][Dk], [N2][valid keys][Dv]
    std::span<A> delta;  // D, [valid queries][N1]
};

template <class A>
BackwardWorkspace<A> carve_backward(const Problem& p, Carver& c) {
    const std::int64_t keys = p.batches.valid_keys();
    BackwardWorkspace<A> w;
    w.k = c.take<A>({p.N2, keys, p.Dk});
    w.v = c.take<A>({p.N2, keys, p.Dv});
    w.delta = c.take<A>({p.batches.valid_queries(), p.N1});
    return w;
}

// One (token, head) row's inputs, loaded once.
template <class A>
struct RowState {
    A* q;   // [Dk]
    A* dO;  // [Dv]
    A max = 0, inv_sum = 0, delta = 0;
    bool live = false;  // stored sum != 0
};

template <class S>
void load_row_state(const Problem& p, std::span<const Accum<S>> delta, std::int64_t b, std::int64_t i,
                    std::int64_t h, RowState<Accum<S>>& r) {
    using A = Accum<S>;
    const std::int64_t t = p.batches.q[b] + i;
    const auto [st, sh] = p.stat_index(b, h, i);
    const float sum = *element<const float>(p.softmax_sum, st, sh, 0);
    r.live = sum != 0.0f;
    if (!r.live) return;
    load_row<S>(p.q, t, h, r.q, p.Dk);
    load_row<S>(p.out_grad, t, h, r.dO, p.Dv);
    r.max = static_cast<A>(*element<const float>(p.softmax_max, st, sh, 0));
    r.inv_sum = A(1) / static_cast<A>(sum);
    r.delta = delta[static_cast<std::size_t>(t * p.N1 + h)];
}

struct KeyTile {
    std::int64_t batch, j0, j1;  // compressed positions [j0, j1) of the batch
};

template <class S>
void backward_impl(const Problem& p, std::span<std::byte> workspace) {
    using A = Accum<S>;
    Carver carver(workspace.data());
    const BackwardWorkspace<A> ws = carve_backward<A>(p, carver);
    const int threads = thread_count();
    const std::int64_t keys = p.batches.valid_keys();
    const std::int64_t valid = p.batches.valid_queries();
    const A scale = static_cast<A>(static_cast<float>(p.scale));
    const std::size_t tw = static_cast<std::size_t>(threads);

    // --- 0. packing and D ----------------------------------------------------------------------
    pack_heads<S>(p.k, keys, p.N2, p.Dk, ws.k.data(), threads);
    pack_heads<S>(p.v, keys, p.N2, p.Dv, ws.v.data(), threads);
    const std::int64_t row_scratch = 2 * (p.Dk + p.Dv);
    std::vector<A> rows(tw * static_cast<std::size_t>(row_scratch));
    parallel_for((valid + kTileTokens - 1) / kTileTokens, threads, [&](std::int64_t task, int worker) {
        A* o = rows.data() + worker * row_scratch;
        A* dO = o + p.Dv;
        for (std::int64_t t = task * kTileTokens; t < std::min((task + 1) * kTileTokens, valid); ++t)
            for (std::int64_t h = 0; h < p.N1; ++h) {
                load_row<S>(p.out, t, h, o, p.Dv);
                load_row<S>(p.out_grad, t, h, dO, p.Dv);
                ws.delta[static_cast<std::size_t>(t * p.N1 + h)] = dot(dO, o, p.Dv);
            }
    });
    const std::span<const A> delta(ws.delta.data(), ws.delta.size());

    // --- 1. dQ pass ----------------------------------------------------------------------------
    const std::vector<QueryTile> tiles = query_tiles(p, kTileTokens);
    std::vector<std::int64_t> visible(tw * static_cast<std::size_t>(p.max_c));
    parallel_for(static_cast<std::int64_t>(tiles.size()) * p.N2, threads, [&](std::int64_t task, int worker) {
        const std::int64_t n2 = task % p.N2;
        const QueryTile tile = tiles[static_cast<std::size_t>(task / p.N2)];
        const std::int64_t b = tile.batch, C = p.batches.key_count(b), kv0 = p.batches.kv[b];
        A* acc = rows.data() + worker * row_scratch;
        RowState<A> r{acc + p.Dk, acc + 2 * p.Dk};
        std::int64_t* vis = visible.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(p.max_c);
        const A* K = ws.k.data() + n2 * keys * p.Dk;
        const A* V = ws.v.data() + n2 * keys * p.Dv;
        for (std::int64_t t = tile.t0; t < tile.t1; ++t) {
            const std::int64_t i = t - p.batches.q[b];
            std::int64_t nvis = 0;
            for (std::int64_t j = 0; j < p.visible_bound(i, C); ++j)
                if (!p.masked(i, j)) vis[nvis++] = kv0 + j;
            for (std::int64_t h = n2 * p.G; h < (n2 + 1) * p.G; ++h) {
                load_row_state<S>(p, delta, b, i, h, r);
                if (!r.live || nvis == 0) {
                    store_zero_row<S>(p.dq, t, h, p.Dk);
                    continue;
                }
                std::fill(acc, acc + p.Dk, A(0));
                for (std::int64_t x = 0; x < nvis; ++x) {
                    const A* k = K + vis[x] * p.Dk;
                    const A P = std::exp(scale * dot(r.q, k, p.Dk) - r.max) * r.inv_sum;
                    const A dS = P * (dot(r.dO, V + vis[x] * p.Dv, p.Dv) - r.delta);
                    axpy(dS, k, acc, p.Dk);
                }
                store_row<S>(p.dq, t, h, acc, scale, p.Dk);
            }
        }
    });
    for (std::int64_t t = valid; t < p.T1; ++t)  // padding rows
        for (std::int64_t h = 0; h < p.N1; ++h) store_zero_row<S>(p.dq, t, h, p.Dk);

    // --- 2. dK/dV pass -------------------------------------------------------------------------
    std::vector<KeyTile> key_tiles;
    for (std::int64_t b = 0; b < p.batches.count(); ++b)
        for (std::int64_t j0 = 0; j0 < p.batches.key_count(b); j0 += kKeyTile)
            key_tiles.push_back({b, j0, std::min(j0 + kKeyTile, p.batches.key_count(b))});
    const std::int64_t tile_scratch = checked_product({kKeyTile, p.Dk + p.Dv}, "the key scratch") + p.Dk + p.Dv;
    std::vector<A> key_acc(tw * static_cast<std::size_t>(tile_scratch));
    parallel_for(static_cast<std::int64_t>(key_tiles.size()) * p.N2, threads, [&](std::int64_t task, int worker) {
        const std::int64_t n2 = task % p.N2;
        const KeyTile kt = key_tiles[static_cast<std::size_t>(task / p.N2)];
        const std::int64_t b = kt.batch, kv0 = p.batches.kv[b], width = kt.j1 - kt.j0;
        A* dk = key_acc.data() + worker * tile_scratch;
        A* dv = dk + kKeyTile * p.Dk;
        RowState<A> r{dv + kKeyTile * p.Dv, dv + kKeyTile * p.Dv + p.Dk};
        std::fill(dk, dk + kKeyTile * (p.Dk + p.Dv), A(0));
        const A* K = ws.k.data() + n2 * keys * p.Dk;
        const A* V = ws.v.data() + n2 * keys * p.Dv;
        // With the built-in rule, position i sees j from i = j*d + l - 1 on.
        const std::int64_t first = p.causal ? p.causal_first(kt.j0, p.batches.query_count(b)) : 0;
        for (std::int64_t i = first; i < p.batches.query_count(b); ++i) {
            const std::int64_t j_end = std::min(kt.j1, p.visible_bound(i, p.batches.key_count(b)));
            if (j_end <= kt.j0) continue;
            for (std::int64_t h = n2 * p.G; h < (n2 + 1) * p.G; ++h) {
                load_row_state<S>(p, delta, b, i, h, r);
                if (!r.live) continue;
                for (std::int64_t j = kt.j0; j < j_end; ++j) {
                    if (p.masked(i, j)) continue;
                    const A* k = K + (kv0 + j) * p.Dk;
                    const A P = std::exp(scale * dot(r.q, k, p.Dk) - r.max) * r.inv_sum;
                    const A dS = P * (dot(r.dO, V + (kv0 + j) * p.Dv, p.Dv) - r.delta);
                    axpy(P, r.dO, dv + (j - kt.j0) * p.Dv, p.Dv);
                    axpy(scale * dS, r.q, dk + (j - kt.j0) * p.Dk, p.Dk);
                }
            }
        }
        for (std::int64_t x = 0; x < width; ++x) {
            store_row<S>(p.dk, kv0 + kt.j0 + x, n2, dk + x * p.Dk, A(1), p.Dk);
            store_row<S>(p.dv, kv0 + kt.j0 + x, n2, dv + x * p.Dv, A(1), p.Dv);
        }
    });
    // Compressed rows past the last batch belong to no batch.
    for (std::int64_t t = keys; t < p.T2; ++t)
        for (std::int64_t n2 = 0; n2 < p.N2; ++n2) {
            store_zero_row<S>(p.dk, t, n2, p.Dk);
            store_zero_row<S>(p.dv, t, n2, p.Dv);
        }
}

}  // namespace

std::size_t generic_backward_workspace(const Problem& p) {
    return with_storage_type(p.dtype, [&](auto* tag) {
        using A = Accum<std::remove_pointer_t<decltype(tag)>>;
        Carver c;
        carve_backward<A>(p, c);
        return c.size();
    });
}

void generic_backward(const Problem& p, std::span<std::byte> workspace) {
    with_storage_type(p.dtype, [&](auto* tag) { backward_impl<std::remove_pointer_t<decltype(tag)>>(p, workspace); });
}

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
    generic_backward(p, workspace);
}

}  // namespace opennsa::detail::compress_attention
