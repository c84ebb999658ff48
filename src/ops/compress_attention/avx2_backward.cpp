// Backward pass, AVX2 + FMA path: the dense masked attention backward with the stored statistics,
// five matmuls per (row, compressed key) -- S, dP, dQ in query-tile tasks, dV, dK in key-tile
// tasks -- with P and dS handed from the first to the second through a chunk buffer instead of
// being recomputed.
//
// Once per call: the compressed K and V of every kv head as fp32 (K^T and V^T panels for S = Q K^T
// and dP = dO V^T, K rows for dQ = dS K) and fp32 dK / dV accumulators, all sized by the
// compressed tokens. The query tiles (as in the forward: one batch's tokens times the G heads of a
// kv head, token-major) are grouped into chunks whose P and dS (all kv heads) fit kChunkBytes; a
// chunk's tiles of one batch form a segment whose rows are contiguous with one row length. For
// each chunk, in order:
//   A. task = (query tile, kv head): q and dO rows as fp32 into the chunk, D = dO . out (one FMA
//      chain in ascending d: the order of the microkernel's dP, so dP - D cancels exactly where
//      out equals a value row), S and dP into the chunk's P and dS rows, then in place
//      P = exp(scale S - max) / sum and dS = P (dP - D), both exactly 0 where the row does not
//      see the key; dq = scale * dS K, rounded once.
//   B. task = (segment, kKeyTile compressed keys, kv head): dV += P^T dO and dK += dS^T Q over
//      the segment's rows that can see the keys, into the fp32 accumulators.
// Then dk = scale * acc and dv = acc, rounded once. Every accumulator row is owned by one task
// per chunk and chunks run in order, so each sums its terms in one fixed order: the same bits for
// any thread count and any chunk size.
#include "ops/compress_attention/avx2.hpp"

#if defined(__x86_64__)
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "core/workspace.hpp"
#include "ops/compress_attention/passes.hpp"
#include "kernels/avx2/core.hpp"
#include "ops/compress_attention/avx2_common.hpp"

namespace opennsa::detail::compress_attention::avx2 {
namespace {

using namespace opennsa::detail::avx2;

std::atomic<std::int64_t> chunk_bytes_override{0};

constexpr std::int64_t round_up(std::int64_t x, std::int64_t to) noexcept { return (x + to - 1) / to * to; }

// A chunk's run of query tiles of one batch: rows [n2][tokens * G][ld] of P and dS, and
// [n2][tokens * G][Dkp | Dvp] of q and dO, at the given offsets of the chunk buffers.
struct Segment {
    std::int64_t batch, tile0, tile1, tok0, tokens;
    std::int64_t nv;      // compressed positions its last token may see (the most of any of its rows)
    std::int64_t ld;      // row length of P and dS: nv rounded up to kKeyTile
    std::int64_t p_off;   // floats into the P / dS buffers
    std::int64_t q_off;   // rows into the q / dO buffers
};

struct Chunk {
    std::int64_t tile0, tile1, seg0, seg1;
};

// The whole plan, from the problem alone.
struct BackwardLayout {
    std::int64_t keys, Dkp, Dvp, ldk, tile_tokens, max_rows, max_np;
    std::vector<QueryTile> tiles;
    std::vector<std::int64_t> tile_nv, tile_segment;
    std::vector<Segment> segments;
    std::vector<Chunk> chunks;
    std::int64_t p_floats = 0, q_rows = 0;  // the largest chunk's P (= dS) floats and q (= dO) rows

    explicit BackwardLayout(const Problem& p)
        : keys(p.batches.valid_keys()), Dkp(padded(p.Dk)), Dvp(padded(p.Dv)), ldk(padded(keys) + kLanes),
          max_np(padded(p.max_c)) {
        const std::int64_t forced = chunk_bytes_override.load(std::memory_order_relaxed);
        const std::int64_t budget = forced > 0 ? forced : kChunkBytes;
        // About kRowTarget rows per tile, fewer when a tile's P and dS (all heads, the longest
        // batch) would not fit kChunkBytes: at least one token (G rows), so a chunk holds at
        // least N1 x maxC x 8 bytes of them.
        const std::int64_t token_bytes =
            checked_product({p.N1, round_up(std::max<std::int64_t>(p.max_c, 1), kKeyTile), 8}, "the backward chunk");
        tile_tokens = std::max<std::int64_t>(1, std::min(kRowTarget / p.G, kChunkBytes / token_bytes));
        max_rows = checked_product({tile_tokens, p.G}, "the tile rows");
        tiles = query_tiles(p, tile_tokens);
        std::int64_t chunk_bytes = 0;  // P + dS of the chunk being built
        const auto seg_bytes = [&](std::int64_t tokens, std::int64_t ld) {
            return checked_product({p.N1, tokens, ld, 8}, "the backward chunk");
        };
        for (std::size_t x = 0; x < tiles.size(); ++x) {
            const QueryTile& t = tiles[x];
            const std::int64_t tokens = t.t1 - t.t0;
            const std::int64_t nv = p.visible_bound(t.t1 - 1 - p.batches.q[t.batch], p.batches.key_count(t.batch));
            const std::int64_t ld = round_up(std::max<std::int64_t>(nv, 1), kKeyTile);  // bounds grow along a batch
            tile_nv.push_back(nv);
            // The tile extends the chunk's last segment when it is of the same batch, else starts one;
            // a tile that would take the chunk past the budget starts the next chunk.
            bool extend = !chunks.empty() && chunks.back().seg1 > chunks.back().seg0 && segments.back().batch == t.batch;
            std::int64_t joined = extend ? checked_add(chunk_bytes - seg_bytes(segments.back().tokens, segments.back().ld),
                                                       seg_bytes(segments.back().tokens + tokens, ld), "the backward chunk")
                                         : checked_add(chunk_bytes, seg_bytes(tokens, ld), "the backward chunk");
            if (chunks.empty() || (joined > budget && chunks.back().tile1 > chunks.back().tile0)) {
                const auto here = static_cast<std::int64_t>(x), segs = static_cast<std::int64_t>(segments.size());
                chunks.push_back({here, here, segs, segs});
                extend = false;
                joined = seg_bytes(tokens, ld);
            }
            Chunk& c = chunks.back();
            if (extend) {
                Segment& s = segments.back();
                s.tile1 = static_cast<std::int64_t>(x) + 1;
                s.tokens += tokens;
                s.nv = nv;
                s.ld = ld;
            } else {
                segments.push_back({t.batch, static_cast<std::int64_t>(x), static_cast<std::int64_t>(x) + 1, t.t0, tokens,
                                    nv, ld, 0, 0});
                c.seg1 = static_cast<std::int64_t>(segments.size());
            }
            c.tile1 = static_cast<std::int64_t>(x) + 1;
            chunk_bytes = joined;
            tile_segment.push_back(static_cast<std::int64_t>(segments.size()) - 1);
        }
        // Offsets inside each chunk, and the largest chunk.
        for (const Chunk& c : chunks) {
            std::int64_t pf = 0, qr = 0;
            for (std::int64_t s = c.seg0; s < c.seg1; ++s) {
                Segment& seg = segments[static_cast<std::size_t>(s)];
                seg.p_off = pf;
                seg.q_off = qr;
                pf = checked_add(pf, checked_product({p.N1, seg.tokens, seg.ld}, "the backward chunk"), "the backward chunk");
                qr = checked_add(qr, checked_product({p.N1, seg.tokens}, "the backward chunk"), "the backward chunk");
            }
            p_floats = std::max(p_floats, pf);
            q_rows = std::max(q_rows, qr);
        }
    }
};

struct RowStats {
    float mx, inv_sum, delta;
    bool live;  // the row contributes: it sees something and its stored sum is not 0
};

// What a chunk hands from its query-tile tasks to its key-tile tasks.
struct ChunkBuffers {
    std::span<float> P, dS;  // [p_floats]
    std::span<float> q, dO;  // rows [q_rows][Dkp | Dvp]
};

struct BackwardWs {
    std::span<float> kt, vt;  // [N2][Dkp | Dvp][ldk] transposed panels
    std::span<float> krows;   // [N2][keys][Dkp]
    std::span<float> dk, dv;  // accumulators [N2][keys][Dkp | Dvp]
    ChunkBuffers chunk[2];    // chunk c uses chunk[c % 2]: the key tasks of c run with the query tasks of c + 1
};

BackwardWs carve_backward(const Problem& p, const BackwardLayout& l, Carver& c) {
    BackwardWs w;
    w.kt = c.take<float>({p.N2, l.Dkp, l.ldk});
    w.vt = c.take<float>({p.N2, l.Dvp, l.ldk});
    w.krows = c.take<float>({p.N2, l.keys, l.Dkp});
    w.dk = c.take<float>({p.N2, l.keys, l.Dkp});
    w.dv = c.take<float>({p.N2, l.keys, l.Dvp});
    for (ChunkBuffers& b : w.chunk) {
        b.P = c.take<float>(l.p_floats);
        b.dS = c.take<float>(l.p_floats);
        b.q = c.take<float>({l.q_rows, l.Dkp});
        b.dO = c.take<float>({l.q_rows, l.Dvp});
    }
    return w;
}

// K^T (or V^T) and optionally K rows of every kv head, 8 compressed rows at a time; tasks of 64
// rows of one head.
template <class S>
void pack_head_panels(const TensorView& src, std::int64_t keys, std::int64_t N2, std::int64_t D, std::int64_t Dp,
                      std::int64_t ldk, float* panels, float* rows_out, int threads) {
    constexpr std::int64_t kKeys = 64;
    std::vector<float> tmp(static_cast<std::size_t>(checked_product({threads, kLanes, Dp}, "the panel scratch")));
    const std::int64_t per_head = (keys + kKeys - 1) / kKeys;
    parallel_for(per_head * N2, threads, [&](std::int64_t task, int worker) {
        const std::int64_t n2 = task / per_head, first = (task % per_head) * kKeys;
        float* panel = panels + n2 * Dp * ldk;
        float* r = tmp.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(kLanes * Dp);
        for (std::int64_t j0 = first; j0 < std::min(first + kKeys, keys); j0 += kLanes) {
            const std::int64_t n = std::min<std::int64_t>(kLanes, keys - j0);
            for (std::int64_t x = 0; x < n; ++x) load_row_padded<S>(src, j0 + x, n2, r + x * Dp, D, Dp);
            std::fill(r + n * Dp, r + kLanes * Dp, 0.0f);
            for (std::int64_t d0 = 0; d0 < Dp; d0 += kLanes) transpose8x8(r + d0, Dp, panel + d0 * ldk + j0, ldk);
            if (rows_out) std::copy(r, r + n * Dp, rows_out + (n2 * keys + j0) * Dp);
        }
    });
    for (std::int64_t n2 = 0; n2 < N2; ++n2)
        for (std::int64_t d = 0; d < Dp; ++d)
            std::fill(panels + (n2 * Dp + d) * ldk + padded(keys), panels + (n2 * Dp + d + 1) * ldk, 0.0f);
}

// D = dO . out as one FMA chain in ascending d (see the top of the file).
NSA_AVX2 float fma_dot(const float* a, const float* b, std::int64_t n) {
    __m128 acc = _mm_setzero_ps();
    for (std::int64_t d = 0; d < n; ++d) acc = _mm_fmadd_ss(_mm_load_ss(a + d), _mm_load_ss(b + d), acc);
    return _mm_cvtss_f32(acc);
}

// In place over [0, np): P = exp(scale S - max) / sum, dS = P (dP - D), 0 where the row does not
// see the key (blended, so a non-finite S or dP there is dropped); zeros on to `width`.
NSA_AVX2 void probabilities(float* s, float* dp, const std::uint8_t* vis, const RowStats& st, float scale,
                            std::int64_t np, std::int64_t width) {
    if (!st.live) {
        std::fill(s, s + width, 0.0f);
        std::fill(dp, dp + width, 0.0f);
        return;
    }
    const __m256 vscale = _mm256_set1_ps(scale), mx = _mm256_set1_ps(st.mx), inv = _mm256_set1_ps(st.inv_sum),
                 d = _mm256_set1_ps(st.delta);
    for (std::int64_t j0 = 0; j0 < np; j0 += kLanes) {
        const __m256 seen = lanes_of(vis + j0);
        const __m256 pr = _mm256_and_ps(_mm256_mul_ps(exp_ps(_mm256_fmsub_ps(_mm256_loadu_ps(s + j0), vscale, mx)), inv), seen);
        const __m256 ds = _mm256_and_ps(_mm256_mul_ps(pr, _mm256_sub_ps(_mm256_loadu_ps(dp + j0), d)), seen);
        _mm256_storeu_ps(s + j0, pr);
        _mm256_storeu_ps(dp + j0, ds);
    }
    std::fill(s + np, s + width, 0.0f);
    std::fill(dp + np, dp + width, 0.0f);
}

struct TileScratch {
    float* o;             // [Dvp] an out row, for D
    float* dq;            // [max_rows][Dkp]
    RowStats* stats;      // [max_rows]
    std::uint8_t* vis;    // [tile_tokens][max_np]
    std::int64_t* count;  // [tile_tokens]
};

// Phase A for one (query tile, kv head).
template <class S>
NSA_AVX2 void query_step(const Problem& p, const BackwardLayout& l, const BackwardWs& ws, const ChunkBuffers& cb,
                         std::int64_t tile_index, std::int64_t n2, const TileScratch& w) {
    const QueryTile& tile = l.tiles[static_cast<std::size_t>(tile_index)];
    const Segment& seg = l.segments[static_cast<std::size_t>(l.tile_segment[static_cast<std::size_t>(tile_index)])];
    const std::int64_t b = tile.batch, qs = p.batches.q[b], C = p.batches.key_count(b), kv0 = p.batches.kv[b];
    const std::int64_t tokens = tile.t1 - tile.t0, rows = tokens * p.G;
    const std::int64_t nv = l.tile_nv[static_cast<std::size_t>(tile_index)], np = padded(nv);
    const std::int64_t width = std::min(seg.ld, round_up(nv, kKeyTile));  // what the key tasks may read
    const std::int64_t row0 = n2 * seg.tokens * p.G + (tile.t0 - seg.tok0) * p.G;  // in the segment
    float* P = cb.P.data() + seg.p_off + row0 * seg.ld;
    float* dS = cb.dS.data() + seg.p_off + row0 * seg.ld;
    float* q = cb.q.data() + (seg.q_off + row0) * l.Dkp;
    float* dO = cb.dO.data() + (seg.q_off + row0) * l.Dvp;
    for (std::int64_t x = 0; x < tokens; ++x) {
        w.count[x] = visibility(p, tile.t0 + x - qs, C, np, w.vis + x * l.max_np);
    }
    for (std::int64_t r = 0; r < rows; ++r) {
        const std::int64_t x = r / p.G, t = tile.t0 + x, h = n2 * p.G + r % p.G;
        load_row_padded<S>(p.q, t, h, q + r * l.Dkp, p.Dk, l.Dkp);
        load_row_padded<S>(p.out_grad, t, h, dO + r * l.Dvp, p.Dv, l.Dvp);
        const auto [st, sh] = p.stat_index(b, h, t - qs);
        const float sum = *element<const float>(p.softmax_sum, st, sh, 0);
        RowStats& rs = w.stats[r];
        rs.live = sum != 0.0f && w.count[x] > 0;
        rs.mx = *element<const float>(p.softmax_max, st, sh, 0);
        rs.inv_sum = 1.0f / sum;
        load_row_f32<S>(p.out, t, h, w.o, p.Dv);
        rs.delta = rs.live ? fma_dot(dO + r * l.Dvp, w.o, p.Dv) : 0.0f;
    }
    if (nv == 0) {  // nothing visible to any row of the tile: dq = 0, and no key task reads its rows
        for (std::int64_t r = 0; r < rows; ++r) store_zero_row<S>(p.dq, tile.t0 + r / p.G, n2 * p.G + r % p.G, p.Dk);
        return;
    }
    gemm_tiles(rows, np, p.Dk, StridedA{q, l.Dkp, 1}, StridedB{ws.kt.data() + n2 * l.Dkp * l.ldk + kv0, l.ldk},
               StridedC{P, seg.ld}, false);
    gemm_tiles(rows, np, p.Dv, StridedA{dO, l.Dvp, 1}, StridedB{ws.vt.data() + n2 * l.Dvp * l.ldk + kv0, l.ldk},
               StridedC{dS, seg.ld}, false);
    const float scale = static_cast<float>(p.scale);
    for (std::int64_t r = 0; r < rows; ++r)
        probabilities(P + r * seg.ld, dS + r * seg.ld, w.vis + (r / p.G) * l.max_np, w.stats[r], scale, np, width);
    gemm_tiles(rows, l.Dkp, nv, StridedA{dS, seg.ld, 1}, StridedB{ws.krows.data() + (n2 * l.keys + kv0) * l.Dkp, l.Dkp},
               StridedC{w.dq, l.Dkp}, false);
    for (std::int64_t r = 0; r < rows; ++r) {
        const std::int64_t t = tile.t0 + r / p.G, h = n2 * p.G + r % p.G;
        if (w.stats[r].live)
            store_row_f32<S>(p.dq, t, h, w.dq + r * l.Dkp, scale, p.Dk);
        else
            store_zero_row<S>(p.dq, t, h, p.Dk);
    }
}

// Rows of P (or dS) [r0, r1) x keys [j0, j0 + keys) of a segment (row length ld) transposed
// into out[key][r - r0] (row length ldo), so the microkernel reads them as a contiguous A.
NSA_AVX2 void transpose_block(const float* src, std::int64_t ld, std::int64_t rows, std::int64_t keys, float* out,
                              std::int64_t ldo) {
    const std::int64_t full = rows / kLanes * kLanes;
    for (std::int64_t r = 0; r < full; r += kLanes)
        for (std::int64_t c = 0; c < keys; c += kLanes) transpose8x8(src + r * ld + c, ld, out + c * ldo + r, ldo);
    for (std::int64_t r = full; r < rows; ++r)  // the tail, one row at a time
        for (std::int64_t c = 0; c < keys; ++c) out[c * ldo + r] = src[r * ld + c];
}

// Phase B for one (segment, keys [j0, j0 + kKeyTile), kv head), kRowBlock rows at a time: the
// block's P and dS transposed into pt / dst ([kKeyTile][kRowBlock] scratch), then dV += P^T dO
// and dK += dS^T Q. Splitting the rows keeps every term's order, so the sums do not change.
NSA_AVX2 void key_step(const Problem& p, const BackwardLayout& l, const BackwardWs& ws, const ChunkBuffers& cb,
                       const Segment& seg, std::int64_t j0, std::int64_t n2, float* pt, float* dst) {
    const std::int64_t keys = std::min(kKeyTile, seg.nv - j0);
    // The segment's first tile that can see j0 (bounds grow along a batch): its rows and the rest.
    std::int64_t first = seg.tile0;
    while (first < seg.tile1 && l.tile_nv[static_cast<std::size_t>(first)] <= j0) ++first;
    if (first == seg.tile1) return;
    const std::int64_t row_first = (l.tiles[static_cast<std::size_t>(first)].t0 - seg.tok0) * p.G;
    const std::int64_t base = n2 * seg.tokens * p.G;  // the head's first row in the segment
    const std::int64_t key0 = n2 * l.keys + p.batches.kv[seg.batch] + j0;
    // Transposing whole 8-key groups reads up to 7 columns past `keys`, inside the row (ld is a
    // multiple of kKeyTile); their rows of pt / dst are never used.
    const std::int64_t keys8 = padded(keys);
    for (std::int64_t r0 = row_first; r0 < seg.tokens * p.G; r0 += kRowBlock) {
        const std::int64_t rows = std::min(kRowBlock, seg.tokens * p.G - r0);
        const std::int64_t at = seg.p_off + (base + r0) * seg.ld + j0;
        transpose_block(cb.P.data() + at, seg.ld, rows, keys8, pt, kRowBlock);
        transpose_block(cb.dS.data() + at, seg.ld, rows, keys8, dst, kRowBlock);
        gemm_tiles(keys, l.Dvp, rows, StridedA{pt, kRowBlock, 1}, StridedB{cb.dO.data() + (seg.q_off + base + r0) * l.Dvp, l.Dvp},
                   StridedC{ws.dv.data() + key0 * l.Dvp, l.Dvp}, true);
        gemm_tiles(keys, l.Dkp, rows, StridedA{dst, kRowBlock, 1}, StridedB{cb.q.data() + (seg.q_off + base + r0) * l.Dkp, l.Dkp},
                   StridedC{ws.dk.data() + key0 * l.Dkp, l.Dkp}, true);
    }
}

template <class S>
void backward_typed(const Problem& p, std::span<std::byte> workspace) {
    const int threads = thread_count();
    const std::int64_t valid = p.batches.valid_queries(), keys = p.batches.valid_keys();
    // A non-finite query, key or out_grad would meet the exact zeros of masked entries in dK, dQ
    // or dV.
    if (!rows_finite<S>(p.q, valid, p.N1, p.Dk, threads) || !rows_finite<S>(p.k, keys, p.N2, p.Dk, threads) ||
        !rows_finite<S>(p.out_grad, valid, p.N1, p.Dv, threads))
        return generic_backward(p, workspace);
    const BackwardLayout l(p);
    Carver carver(workspace.data());
    const BackwardWs ws = carve_backward(p, l, carver);
    pack_head_panels<S>(p.k, keys, p.N2, p.Dk, l.Dkp, l.ldk, ws.kt.data(), ws.krows.data(), threads);
    pack_head_panels<S>(p.v, keys, p.N2, p.Dv, l.Dvp, l.ldk, ws.vt.data(), nullptr, threads);
    parallel_for(2, threads, [&](std::int64_t which, int) {
        const std::span<float> acc = which == 0 ? ws.dk : ws.dv;
        std::fill(acc.begin(), acc.end(), 0.0f);
    });

    const std::size_t tw = static_cast<std::size_t>(threads);
    std::vector<float> floats(tw * static_cast<std::size_t>(l.Dvp + l.max_rows * l.Dkp));
    std::vector<RowStats> stats(tw * static_cast<std::size_t>(l.max_rows));
    std::vector<std::uint8_t> vis(tw * static_cast<std::size_t>(checked_product({l.tile_tokens, l.max_np}, "the tile scratch")));
    std::vector<std::int64_t> counts(tw * static_cast<std::size_t>(l.tile_tokens));
    const auto scratch_of = [&](int worker) {
        const std::size_t wk = static_cast<std::size_t>(worker);
        float* f = floats.data() + wk * static_cast<std::size_t>(l.Dvp + l.max_rows * l.Dkp);
        return TileScratch{f, f + l.Dvp, stats.data() + wk * static_cast<std::size_t>(l.max_rows),
                           vis.data() + wk * (vis.size() / tw), counts.data() + wk * static_cast<std::size_t>(l.tile_tokens)};
    };
    std::vector<float> transposed(tw * 2 * kKeyTile * kRowBlock);
    // One job per step c: the key tasks of chunk c - 1 and the query tasks of chunk c, on the two
    // buffers in turn (one barrier per chunk; the key tasks of a chunk run after all its query tasks).
    std::vector<std::pair<std::int64_t, std::int64_t>> key_tasks;  // (segment, j0) of the previous chunk
    const std::int64_t nchunks = static_cast<std::int64_t>(l.chunks.size());
    for (std::int64_t c = 0; c <= nchunks; ++c) {
        const std::int64_t key_count = static_cast<std::int64_t>(key_tasks.size()) * p.N2;
        const Chunk* now = c < nchunks ? &l.chunks[static_cast<std::size_t>(c)] : nullptr;
        const std::int64_t query_count = now ? (now->tile1 - now->tile0) * p.N2 : 0;
        const ChunkBuffers& previous = ws.chunk[(c + 1) % 2];
        const ChunkBuffers& current = ws.chunk[c % 2];
        parallel_for(key_count + query_count, threads, [&](std::int64_t task, int worker) {
            if (task < key_count) {
                const auto [s, j0] = key_tasks[static_cast<std::size_t>(task / p.N2)];
                float* pt = transposed.data() + static_cast<std::size_t>(worker) * 2 * kKeyTile * kRowBlock;
                key_step(p, l, ws, previous, l.segments[static_cast<std::size_t>(s)], j0, task % p.N2, pt,
                         pt + kKeyTile * kRowBlock);
                return;
            }
            task -= key_count;
            query_step<S>(p, l, ws, current, now->tile0 + task / p.N2, task % p.N2, scratch_of(worker));
        });
        key_tasks.clear();
        for (std::int64_t s = now ? now->seg0 : 0; now && s < now->seg1; ++s)
            for (std::int64_t j0 = 0; j0 < l.segments[static_cast<std::size_t>(s)].nv; j0 += kKeyTile)
                key_tasks.emplace_back(s, j0);
    }
    for (std::int64_t t = valid; t < p.T1; ++t)  // padding rows
        for (std::int64_t h = 0; h < p.N1; ++h) store_zero_row<S>(p.dq, t, h, p.Dk);
    // dk = scale * acc, dv = acc; zeros for compressed rows past the last batch.
    constexpr std::int64_t kRows = 64;
    parallel_for((p.T2 + kRows - 1) / kRows, threads, [&](std::int64_t task, int) {
        for (std::int64_t t = task * kRows; t < std::min((task + 1) * kRows, p.T2); ++t)
            for (std::int64_t n2 = 0; n2 < p.N2; ++n2) {
                if (t >= keys) {
                    store_zero_row<S>(p.dk, t, n2, p.Dk);
                    store_zero_row<S>(p.dv, t, n2, p.Dv);
                    continue;
                }
                store_row_f32<S>(p.dk, t, n2, ws.dk.data() + (n2 * keys + t) * l.Dkp, static_cast<float>(p.scale), p.Dk);
                store_row_f32<S>(p.dv, t, n2, ws.dv.data() + (n2 * keys + t) * l.Dvp, 1.0f, p.Dv);
            }
    });
}

}  // namespace

std::size_t backward_workspace(const Problem& p) {
    Carver c;
    carve_backward(p, BackwardLayout(p), c);
    return std::max(c.size(), generic_backward_workspace(p));
}

void run_backward(const Problem& p, std::span<std::byte> workspace) {
    with_float_storage(p.dtype, [&](auto* tag) { backward_typed<std::remove_pointer_t<decltype(tag)>>(p, workspace); });
}

void set_chunk_bytes_for_testing(std::int64_t bytes) noexcept { chunk_bytes_override = bytes; }

}  // namespace opennsa::detail::compress_attention::avx2

#endif  // __x86_64__
