// Forward pass, AVX2 + FMA path. One kv head at a time (heads share nothing): its compressed keys
// are packed as one transposed fp32 panel K^T [Dk][keys] and its values as fp32 rows, read by
// every task of the head. A task is a tile of query tokens of one batch; its rows are the G query
// heads of the kv head times the tile's tokens (token-major), about kRowTarget of them:
//
//   S = Q K^T over the compressed keys the tile can see (with the built-in rule a prefix, so the
//     last token's bound; a row's invisible entries are blended out below);
//   per row: the scores scaled and masked (-inf), a NaN-keeping max, e = exp(s - max) masked
//     to 0, sum; statistics stored;
//   O = E V over the same keys, each row times 1 / sum, rounded once;
//   per token: P summed over its G rows (e * 1/sum, fp32, while the tile's E is in cache), the
//     (m + n - 1)-tap stencil onto selection blocks, forced blocks, and the top-k by a partial
//     selection with the tie rule (scores.hpp).
//
// No buffer holds more than one tile's scores. Each (token, head) row and (token, kv head) topk
// row is written by one task; every reduction runs in a fixed order: the same bits for any thread
// count.
#include "ops/compress_attention/avx2.hpp"

#if defined(__x86_64__)
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "core/workspace.hpp"
#include "ops/compress_attention/passes.hpp"
#include "ops/compress_attention/scores.hpp"
#include "kernels/avx2/core.hpp"
#include "ops/compress_attention/avx2_common.hpp"

namespace opennsa::detail::compress_attention::avx2 {
namespace {

using namespace opennsa::detail::avx2;

// Sizes derived from the problem alone.
struct ForwardLayout {
    std::int64_t keys, Dkp, Dvp, ldk;  // valid compressed rows, padded head dims, K^T row length
    std::int64_t tile_tokens, max_rows, max_np;
    explicit ForwardLayout(const Problem& p)
        : keys(p.batches.valid_keys()), Dkp(padded(p.Dk)), Dvp(padded(p.Dv)), ldk(padded(keys) + kLanes),
          max_np(padded(p.max_c)) {
        // About kRowTarget rows, fewer when the tile's scores would pass kTileScoreBytes.
        const std::int64_t row_bytes = checked_product({std::max<std::int64_t>(max_np, 1), 4}, "a row of scores");
        tile_tokens = std::max<std::int64_t>(1, std::min(kRowTarget / p.G, kTileScoreBytes / (row_bytes * p.G)));
        max_rows = checked_product({tile_tokens, p.G}, "the tile rows");
    }
};

struct ForwardPacked {
    std::span<float> kt;  // [Dkp][ldk]: kt[d][j] = key[j, n2, d], zero past the valid keys and Dk
    std::span<float> v;   // [keys][Dvp]
};

ForwardPacked carve_forward(const ForwardLayout& l, Carver& c) {
    return {c.take<float>({l.Dkp, l.ldk}), c.take<float>({l.keys, l.Dvp})};
}

// K^T of head n2 from the input, 8 keys at a time through an 8x8 transpose; tasks of 64 keys.
template <class S>
void pack_key_panel(const Problem& p, const ForwardLayout& l, std::int64_t n2, float* kt, int threads) {
    constexpr std::int64_t kKeys = 64;
    std::vector<float> rows(static_cast<std::size_t>(checked_product({threads, kLanes, l.Dkp}, "the panel scratch")));
    const std::int64_t tasks = (l.keys + kKeys - 1) / kKeys;
    parallel_for(tasks, threads, [&](std::int64_t task, int worker) {
        float* r = rows.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(kLanes * l.Dkp);
        for (std::int64_t j0 = task * kKeys; j0 < std::min((task + 1) * kKeys, l.keys); j0 += kLanes) {
            const std::int64_t n = std::min<std::int64_t>(kLanes, l.keys - j0);
            for (std::int64_t x = 0; x < n; ++x) load_row_padded<S>(p.k, j0 + x, n2, r + x * l.Dkp, p.Dk, l.Dkp);
            std::fill(r + n * l.Dkp, r + kLanes * l.Dkp, 0.0f);
            for (std::int64_t d0 = 0; d0 < l.Dkp; d0 += kLanes) transpose8x8(r + d0, l.Dkp, kt + d0 * l.ldk + j0, l.ldk);
        }
    });
    for (std::int64_t d = 0; d < l.Dkp; ++d) std::fill(kt + d * l.ldk + padded(l.keys), kt + (d + 1) * l.ldk, 0.0f);
}

// Per-worker scratch of one tile.
struct TileScratch {
    float* q;             // [max_rows][Dkp]
    float* s;             // [max_rows][max_np]: S, then E = exp(s - max) (0 where invisible)
    float* o;             // [max_rows][Dvp]
    float* inv;           // [max_rows] 1 / sum (0 for a row that sees nothing)
    float* psum;          // [max_np] the token's summed P per compressed position
    float* score;         // [max_ns]
    std::uint8_t* vis;    // [tile_tokens][max_np]: 1 where the token sees the position
    std::int64_t* count;  // [tile_tokens] visible positions per token
    std::uint8_t* forced; // [max_ns]
    std::uint64_t* ranking;  // [max_ns]
    std::int32_t* top;       // [k]
};

template <class S>
NSA_AVX2 void forward_tile(const Problem& p, const ForwardLayout& l, const ForwardPacked& pk, std::int64_t n2,
                           const QueryTile& tile, const TileScratch& w) {
    const std::int64_t b = tile.batch, qs = p.batches.q[b], C = p.batches.key_count(b), kv0 = p.batches.kv[b];
    const std::int64_t ns = p.block_count(b), tokens = tile.t1 - tile.t0, rows = tokens * p.G;
    // The compressed positions some token of the tile may see: with the built-in rule the last
    // token's prefix, else all of the batch.
    const std::int64_t nv = p.visible_bound(tile.t1 - 1 - qs, C);
    const std::int64_t np = padded(nv);
    for (std::int64_t x = 0; x < tokens; ++x) {
        w.count[x] = visibility(p, tile.t0 + x - qs, C, np, w.vis + x * l.max_np);
    }
    const float scale = static_cast<float>(p.scale);
    if (nv > 0) {
        for (std::int64_t r = 0; r < rows; ++r)
            load_row_padded<S>(p.q, tile.t0 + r / p.G, n2 * p.G + r % p.G, w.q + r * l.Dkp, p.Dk, l.Dkp);
        gemm_tiles(rows, np, p.Dk, StridedA{w.q, l.Dkp, 1}, StridedB{pk.kt.data() + kv0, l.ldk}, StridedC{w.s, np},
                   false);
    }
    for (std::int64_t r = 0; r < rows; ++r) {
        const std::int64_t x = r / p.G, h = n2 * p.G + r % p.G;
        const auto [st, sh] = p.stat_index(b, h, tile.t0 + x - qs);
        float mx = 0.0f, sum = 0.0f;
        if (w.count[x] > 0) softmax_row(w.s + r * np, w.vis + x * l.max_np, np, scale, &mx, &sum);
        else
            std::fill(w.s + r * np, w.s + (r + 1) * np, 0.0f);  // nothing visible: out = max = sum = 0
        w.inv[r] = w.count[x] > 0 ? 1.0f / sum : 0.0f;
        store_stat(p.softmax_max, st, sh, mx);
        store_stat(p.softmax_sum, st, sh, sum);
    }
    if (nv > 0) {
        gemm_tiles(rows, l.Dvp, nv, StridedA{w.s, np, 1}, StridedB{pk.v.data() + kv0 * l.Dvp, l.Dvp},
                   StridedC{w.o, l.Dvp}, false);
        for (std::int64_t r = 0; r < rows; ++r)
            store_row_f32<S>(p.out, tile.t0 + r / p.G, n2 * p.G + r % p.G, w.o + r * l.Dvp, w.inv[r], p.Dv);
    } else {
        for (std::int64_t r = 0; r < rows; ++r) store_zero_row<S>(p.out, tile.t0 + r / p.G, n2 * p.G + r % p.G, p.Dv);
    }
    // Scores and top-k per token.
    for (std::int64_t x = 0; x < tokens; ++x) {
        const std::int64_t i = tile.t0 + x - qs;
        sum_heads(w.s + x * p.G * np, np, w.inv + x * p.G, p.G, np, w.vis + x * l.max_np, w.psum);
        if (np < C) std::fill(w.psum + np, w.psum + C, 0.0f);  // positions past the tile's reach
        block_scores(p, w.psum, C, ns, w.score);
        for (std::int64_t J = 0; J < ns; ++J) w.forced[J] = p.forced(i, J);
        rank_blocks(w.score, w.forced, ns, p.sel_count, w.ranking, w.top);
        for (std::int64_t s = 0; s < p.sel_count; ++s) *element<std::int32_t>(p.topk, tile.t0 + x, n2, s) = w.top[s];
    }
}

template <class S>
void forward_typed(const Problem& p, std::span<std::byte> workspace) {
    const int threads = thread_count();
    // A non-finite value would meet the exact zeros of masked entries in O = E V.
    if (!rows_finite<S>(p.v, p.batches.valid_keys(), p.N2, p.Dv, threads)) return generic_forward(p, workspace);
    const ForwardLayout l(p);
    Carver carver(workspace.data());
    const ForwardPacked pk = carve_forward(l, carver);
    const std::vector<QueryTile> tiles = query_tiles(p, l.tile_tokens);
    // Largest tiles first, so the threads finish together (claim order only: a tile is one task).
    std::vector<std::size_t> order(tiles.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    const auto work = [&](const QueryTile& t) {
        return (t.t1 - t.t0) * p.visible_bound(t.t1 - 1 - p.batches.q[t.batch], p.batches.key_count(t.batch));
    };
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return work(tiles[a]) > work(tiles[b]); });

    // Per-worker scratch.
    const std::int64_t floats = checked_add(
        checked_product({l.max_rows, checked_add(checked_add(l.Dkp, l.max_np, "the tile scratch"), l.Dvp + 1, "the tile scratch")},
                        "the tile scratch"),
        l.max_np + p.max_ns, "the tile scratch");
    const std::size_t tw = static_cast<std::size_t>(threads);
    std::vector<float> scratch(tw * static_cast<std::size_t>(floats));
    std::vector<std::uint8_t> bytes(tw * static_cast<std::size_t>(checked_add(
                                             checked_product({l.tile_tokens, l.max_np}, "the tile scratch"), p.max_ns, "the tile scratch")));
    std::vector<std::int64_t> counts(tw * static_cast<std::size_t>(l.tile_tokens));
    std::vector<std::uint64_t> ranking(tw * static_cast<std::size_t>(p.max_ns));
    std::vector<std::int32_t> tops(tw * static_cast<std::size_t>(p.sel_count));
    const auto scratch_of = [&](int worker) {
        float* f = scratch.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(floats);
        std::uint8_t* u = bytes.data() + static_cast<std::size_t>(worker) * (bytes.size() / tw);
        TileScratch w;
        w.q = f;
        w.s = w.q + l.max_rows * l.Dkp;
        w.o = w.s + l.max_rows * l.max_np;
        w.inv = w.o + l.max_rows * l.Dvp;
        w.psum = w.inv + l.max_rows;
        w.score = w.psum + l.max_np;
        w.vis = u;
        w.forced = u + l.tile_tokens * l.max_np;
        w.count = counts.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(l.tile_tokens);
        w.ranking = ranking.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(p.max_ns);
        w.top = tops.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(p.sel_count);
        return w;
    };
    for (std::int64_t n2 = 0; n2 < p.N2; ++n2) {
        pack_key_panel<S>(p, l, n2, pk.kt.data(), threads);
        pack_rows<S>(p.v, l.keys, n2, p.Dv, l.Dvp, pk.v.data(), threads);
        parallel_for(static_cast<std::int64_t>(tiles.size()), threads, [&](std::int64_t task, int worker) {
            forward_tile<S>(p, l, pk, n2, tiles[order[static_cast<std::size_t>(task)]], scratch_of(worker));
        });
    }
}

}  // namespace

std::size_t forward_workspace(const Problem& p) {
    Carver c;
    carve_forward(ForwardLayout(p), c);
    return std::max(c.size(), generic_forward_workspace(p));
}

void run_forward(const Problem& p, std::span<std::byte> workspace) {
    with_float_storage(p.dtype, [&](auto* tag) { forward_typed<std::remove_pointer_t<decltype(tag)>>(p, workspace); });
}

}  // namespace opennsa::detail::compress_attention::avx2

#endif  // __x86_64__
