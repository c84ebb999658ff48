// Backward pass, AVX2 + FMA path: five matmuls per (query row, selected block) instead of the
// generic path's seven, by computing dQ inside the key-block step for a fixed chunk of query
// tokens (the FSA paper's loop order).
//
// The kv heads are independent (head n2 reads only its K/V and its G query heads, and writes only
// its dk/dv rows and those heads' dq rows), so they run one after another and the per-head
// buffers (fp32 dK/dV accumulators, the chunk) are sized for one head. K and V are never copied
// whole: each dK/dV task widens and transposes its block from the input. For each head:
//   0. zero its fp32 dK/dV accumulators;
//   for each chunk of query tokens, in order:
//   1. pack the chunk's q and dO rows as fp32, with the row statistics (max, 1/sum, D = dO.o)
//      (in the same job as the previous chunk's step 3);
//   2. dK/dV step, task = key block: the chunk's (token, slot) entries of the reverse index, times
//      the G heads, form the rows of S = Q K_blk^T and dP = dO V_blk^T (tiles of kRowTile rows);
//      P and dS = P (dP - D) follow elementwise; dV += P^T dO and dK += dS^T Q accumulate in fp32
//      rows that persist across chunks; the per-(row, slot) partial dQ_slot = dS K_blk is a
//      matmul over the same rows, written to the chunk's store;
//   3. dQ step, task = kQueryTokens tokens: dQ = sum of the partials in slot order;
//   4. dk = scale * acc and dv = acc, rounded once.
// Every matmul batches all rows that selected a block, so small G still gets real matmuls.
// For bf16 inputs on CPUs with AVX512_BF16 (use_bf16_dot()) the matmuls run on the bf16 dot
// tiles: S (the forward's S, bit for bit) and dP, whose operands are inputs; dQ_slot = dS K with
// dS rounded to bf16; and, when G is even, dV += P^T dO and dK += dS^T Q with P and dS rounded
// (SPEC 7). Those two sum over pairs of rows; with G even a pair is two heads of one query token,
// never two tokens, so the chain does not depend on how the tokens are chunked. With G odd they
// stay fp32.
// Chunks run one after another and every accumulator row is owned by one task per chunk, reduced
// in a fixed order: the same bits for any thread count and any chunk size. Extra memory: one
// head's accumulators, the reverse index, one chunk, and per thread a block's K/V and the tiles.
#include "ops/select_attention/avx2.hpp"

#if defined(__x86_64__)
#include <atomic>
#include <cmath>
#include <vector>

#include "kernels/avx2/core.hpp"
#include "ops/select_attention/plan.hpp"

namespace opennsa::detail::select_attention::avx2 {
namespace {

using namespace opennsa::detail::avx2;


std::atomic<std::int64_t> chunk_override{0};

// Sizes derived from the problem alone.
struct BackwardLayout {
    KeyBlocks blocks;
    std::int64_t nb, bsp, Dkp, Dvp;
    std::int64_t Dk2, Dv2;  // bf16 pairs of a q / k row and of a dO / v row
    std::int64_t chunk;     // query tokens per chunk
    explicit BackwardLayout(const Problem& p)
        : blocks(make_key_blocks(p)), nb(blocks.total()), bsp(padded(p.block_len)), Dkp(padded(p.Dk)), Dvp(padded(p.Dv)),
          Dk2((p.Dk + 1) / 2), Dv2((p.Dv + 1) / 2) {
        // The chunk's dQ partials take half the fp32 dk+dv size of all heads, within
        // [kDqChunkMinBytes, kDqChunkBytes]: with one head's accumulators and the index the
        // workspace stays within the accumulator size the memory target allows, except where that
        // is below the 2 MiB floor (N2 = 1 and short sequences).
        const std::int64_t dkdv_bytes = checked_product({p.N2, p.T2, p.Dk + p.Dv, 4}, "the dk + dv accumulators");
        const std::int64_t budget = std::clamp(dkdv_bytes / 2, kDqChunkMinBytes, kDqChunkBytes);
        const std::int64_t per_token = std::max<std::int64_t>(1, checked_product({p.G, p.C, Dkp, 4}, "the dQ partials"));
        chunk = std::max<std::int64_t>(kQueryTokens, budget / per_token / kQueryTokens *
                                                                kQueryTokens);
        chunk = std::min(chunk, std::max<std::int64_t>(kQueryTokens, tiles::padded(p.T1)));
        if (const std::int64_t forced = chunk_override.load(std::memory_order_relaxed); forced > 0) chunk = forced;
    }
};

struct RowStats {
    float mx, inv_sum, delta;
    bool finite;  // q and dO of the row hold no NaN / Inf
};

struct BackwardWs {
    ReverseIndex index;      // all heads; entries t * C + slot
    // One kv head at a time:
    std::span<float> dk, dv; // accumulators [T2][Dkp], [T2][Dvp]
    std::span<float> q, dO;  // chunk rows [chunk][G][Dkp], [chunk][G][Dvp]
    std::span<RowStats> stats;  // [chunk][G]
    std::span<float> dqp;    // partial dQ per slot [chunk][G][C][Dkp]
    // bf16 problems (carved whatever the CPU, so the size does not depend on it; filled where
    // the bf16 dot runs): the chunk's q and dO rows as bf16 pairs (A of S and dP), and two heads
    // (2h, 2h + 1) of a token paired (B of dK and dV, G even).
    std::span<std::uint32_t> qp, dOp;  // [chunk][G][Dk2], [chunk][G][Dv2]
    std::span<std::uint32_t> qh, dOh;  // [chunk][G / 2][Dkp], [chunk][G / 2][Dvp]
};

BackwardWs carve_backward(const Problem& p, const BackwardLayout& l, Carver& c) {
    BackwardWs w;
    w.index.offsets =
        c.take<std::int64_t>(checked_add(checked_product({p.N2, l.nb}, "the reverse index"), 1, "the reverse index"));
    w.index.rows = c.take<std::int64_t>({p.T1, p.N2, p.C});
    w.dk = c.take<float>({p.T2, l.Dkp});
    w.dv = c.take<float>({p.T2, l.Dvp});
    w.q = c.take<float>({l.chunk, p.G, l.Dkp});
    w.dO = c.take<float>({l.chunk, p.G, l.Dvp});
    w.stats = c.take<RowStats>({l.chunk, p.G});
    w.dqp = c.take<float>({l.chunk, p.G, p.C, l.Dkp});
    if (p.dtype == DType::bf16) {
        w.qp = c.take<std::uint32_t>({l.chunk, p.G, l.Dk2});
        w.dOp = c.take<std::uint32_t>({l.chunk, p.G, l.Dv2});
        w.qh = c.take<std::uint32_t>({l.chunk, p.G / 2, l.Dkp});
        w.dOh = c.take<std::uint32_t>({l.chunk, p.G / 2, l.Dvp});
    }
    return w;
}

// Per-worker scratch of the dK/dV step.
struct BlockScratch {
    const float** q;   // [kRowTile] row pointers into the chunk
    const float** dO;  // [kRowTile]
    float** dqp;       // [kRowTile] where each row's partial dQ goes in the chunk store
    RowStats* stats;   // [kRowTile]
    std::int64_t* vis; // [kRowTile] visible keys of the block for the row
    float* s;          // [kRowTile][bsp]: S, then P
    float* dp;         // [kRowTile][bsp]: dP, then dS
    // The block's K and V as fp32, built from the input per task (no T2-sized copies):
    float* krows;      // [bsp][Dkp] rows (B of dQ_slot = dS K_blk)
    float* vrows;      // [bsp][Dvp] rows (only to build vt)
    float* kt;         // [Dkp][bsp] transposed (B of S = Q K^T)
    float* vt;         // [Dvp][bsp] transposed (B of dP = dO V^T)
    // bf16 dot only: the operands in pair form.
    struct Pairs {
        const std::uint32_t** q;    // [kRowTile] the rows' q pairs in the chunk (A of S)
        const std::uint32_t** dO;   // [kRowTile] (A of dP)
        const std::uint32_t** qh;   // [kRowTile / 2] the rows' head pairs (B of dK; G even)
        const std::uint32_t** dOh;  // [kRowTile / 2] (B of dV)
        std::uint32_t* kt;          // [Dkp / 2][bsp] kt paired over d (B of S)
        std::uint32_t* vt;          // [Dvp / 2][bsp] (B of dP)
        std::uint32_t* krows;       // [bsp / 2][Dkp] K rows paired over keys (B of dQ_slot)
        std::uint32_t* ds;          // [kRowTile][bsp / 2] dS paired over keys (A of dQ_slot)
        std::uint32_t* pt;          // [kRowTile / 2][bsp] P^T paired over rows (A of dV)
        std::uint32_t* dst;         // [kRowTile / 2][bsp] dS^T (A of dK)
    } pairs;
};

// Words of one worker's pair buffers (Pairs::kt .. Pairs::dst).
std::int64_t pair_buffer_words(const BackwardLayout& l) {
    return checked_product({l.bsp, checked_add(l.Dkp + l.Dvp, 2 * kRowTile, "the block scratch")}, "the block scratch");
}

BlockScratch::Pairs carve_pairs(const BackwardLayout& l, const std::uint32_t** ptrs, std::uint32_t* at) {
    BlockScratch::Pairs w{ptrs, ptrs + kRowTile, ptrs + 2 * kRowTile, ptrs + 2 * kRowTile + kRowTile / 2,
                          nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};
    const std::int64_t bsp2 = l.bsp / 2;
    w.kt = at;
    w.vt = w.kt + l.Dkp / 2 * l.bsp;
    w.krows = w.vt + l.Dvp / 2 * l.bsp;
    w.ds = w.krows + bsp2 * l.Dkp;
    w.pt = w.ds + kRowTile * bsp2;
    w.dst = w.pt + kRowTile / 2 * l.bsp;
    return w;  // ends at dst + kRowTile / 2 * bsp: bsp (Dkp + Dvp) + 2 kRowTile bsp words in all
}

// P = exp(scale S - max) / sum and dS = P (dP - D) for `rows` rows, invisible keys zeroed (the
// bf16 dot operands are rounded from these fp32 values when they are paired).
NSA_AVX2 void probabilities(const BackwardLayout& l, const BlockScratch& w, std::int64_t rows, float scale) {
    const __m256 vscale = _mm256_set1_ps(scale);
    for (std::int64_t r = 0; r < rows; ++r) {
        const RowStats st = w.stats[r];
        const __m256 mx = _mm256_set1_ps(st.mx), inv = _mm256_set1_ps(st.inv_sum), d = _mm256_set1_ps(st.delta);
        float* s = w.s + r * l.bsp;
        float* dp = w.dp + r * l.bsp;
        for (std::int64_t j0 = 0; j0 < l.bsp; j0 += kLanes) {
            const __m256 x = _mm256_fmsub_ps(_mm256_loadu_ps(s + j0), vscale, mx);
            const __m256 pr = _mm256_and_ps(_mm256_mul_ps(exp_ps(x), inv), lanes_below(j0, w.vis[r]));
            // Masked again: P = 0 times a NaN dP must stay 0 for keys the row does not see.
            const __m256 ds = _mm256_and_ps(_mm256_mul_ps(pr, _mm256_sub_ps(_mm256_loadu_ps(dp + j0), d)),
                                            lanes_below(j0, w.vis[r]));
            _mm256_storeu_ps(s + j0, pr);
            _mm256_storeu_ps(dp + j0, ds);
        }
    }
}

// The chunk's entries of head n2's index cell for key block gb: tokens [c0, c1).
std::span<const std::int64_t> chunk_entries(const Problem& p, const BackwardLayout& l, const BackwardWs& ws,
                                            std::int64_t n2, std::int64_t gb, std::int64_t c0, std::int64_t c1) {
    const std::span<const std::int64_t> all = ws.index.of(n2, l.nb, gb);
    const auto lo = std::lower_bound(all.begin(), all.end(), c0 * p.C);
    const auto hi = std::lower_bound(lo, all.end(), c1 * p.C);
    return {&*lo, static_cast<std::size_t>(hi - lo)};
}

// n fp32 values hold no NaN or Inf (an all-ones exponent).
NSA_AVX2 bool all_finite(const float* x, std::int64_t n) {
    const __m256i exp_mask = _mm256_set1_epi32(0x7f800000);
    __m256i bad = _mm256_setzero_si256();
    std::int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
        const __m256i e = _mm256_and_si256(_mm256_castps_si256(_mm256_loadu_ps(x + i)), exp_mask);
        bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(e, exp_mask));
    }
    bool ok = _mm256_testz_si256(bad, bad);
    for (; i < n; ++i) ok = ok && std::isfinite(x[i]);
    return ok;
}

// The block step for tiles that touch a NaN or Inf (in a row's q or dO, or in the block's K or
// V), key by key over the visible keys only, as the reference does. The matmul tiles would
// multiply the zero P / dS of keys a row does not see by those values and spread NaN to them; this
// keeps the non-finite pattern of every output the reference's. Rare, so plain loops.
NSA_AVX2 void block_tile_exact(const BackwardLayout& l, const BlockScratch& w, std::int64_t rows, float scale, float* dk,
                               float* dv) {
    for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t d = 0; d < l.Dkp; ++d) w.dqp[r][d] = 0.0f;
    for (std::int64_t r = 0; r < rows; ++r) {
        const RowStats st = w.stats[r];
        for (std::int64_t j = 0; j < w.vis[r]; ++j) {
            float s = 0.0f, dpv = 0.0f;
            for (std::int64_t d = 0; d < l.Dkp; ++d) s += w.q[r][d] * w.krows[j * l.Dkp + d];
            for (std::int64_t d = 0; d < l.Dvp; ++d) dpv += w.dO[r][d] * w.vrows[j * l.Dvp + d];
            float pr = 0.0f;
            _mm_store_ss(&pr, _mm256_castps256_ps128(exp_ps(_mm256_set1_ps(s * scale - st.mx))));
            pr *= st.inv_sum;
            const float ds = pr * (dpv - st.delta);
            for (std::int64_t d = 0; d < l.Dvp; ++d) dv[j * l.Dvp + d] += pr * w.dO[r][d];
            for (std::int64_t d = 0; d < l.Dkp; ++d) dk[j * l.Dkp + d] += ds * w.q[r][d];
            for (std::int64_t d = 0; d < l.Dkp; ++d) w.dqp[r][d] += ds * w.krows[j * l.Dkp + d];
        }
    }
}

// dK/dV step for key block gb of kv head n2 over the chunk's entries.
template <class S>
NSA_AVX2 void block_step(const Problem& p, const BackwardLayout& l, const BackwardWs& ws, std::int64_t n2,
                         std::int64_t gb, std::int64_t c0, std::span<const std::int64_t> entries,
                         const BlockScratch& w, bool bf16_dot) {
    if (entries.empty()) return;
    const KeyBlock blk = locate_block(p, l.blocks, gb);
    const std::int64_t b = blk.batch, x = blk.x, keys = blk.keys, key0 = blk.key0;
    const QueryRow batch_row{b, 0, p.batches.kv[b], p.batches.key_count(b)};
    float* dk = ws.dk.data() + key0 * l.Dkp;
    float* dv = ws.dv.data() + key0 * l.Dvp;
    // The block's K and V from the input, per task: rows and 8x8-transposed panels, a few percent
    // of the step's matmuls, and the only copies of K and V the backward makes.
    block_rows_and_panel<S>(p.k, key0, keys, n2, p.Dk, l.Dkp, l.bsp, w.krows, w.kt);
    block_rows_and_panel<S>(p.v, key0, keys, n2, p.Dv, l.Dvp, l.bsp, w.vrows, w.vt);
    const bool block_finite = all_finite(w.krows, keys * l.Dkp) && all_finite(w.vrows, keys * l.Dvp);
    const bool pair_rows = bf16_dot && p.G % 2 == 0;  // dV and dK on the bf16 dot tiles
    const BlockScratch::Pairs& pw = w.pairs;
    if (bf16_dot) {
        pair_panel(w.kt, l.Dkp / 2, l.bsp, pw.kt);
        pair_panel(w.vt, l.Dvp / 2, l.bsp, pw.vt);
        for (std::int64_t m = 0; m < l.bsp / 2; ++m)
            pair_two_rows(w.krows + 2 * m * l.Dkp, w.krows + (2 * m + 1) * l.Dkp, l.Dkp, pw.krows + m * l.Dkp);
    }
    const std::int64_t total = static_cast<std::int64_t>(entries.size()) * p.G;
    for (std::int64_t r0 = 0; r0 < total; r0 += kRowTile) {
        const std::int64_t rows = std::min(kRowTile, total - r0);
        for (std::int64_t r = 0; r < rows; ++r) {
            const std::int64_t e = entries[static_cast<std::size_t>((r0 + r) / p.G)];
            const std::int64_t t = e / p.C, slot = e % p.C;
            const std::int64_t cell = (t - c0) * p.G + (r0 + r) % p.G;
            QueryRow row = batch_row;
            row.pos = t - p.batches.q[b];
            const Segment seg = visible_part(p, row, x);
            w.q[r] = ws.q.data() + cell * l.Dkp;
            w.dO[r] = ws.dO.data() + cell * l.Dvp;
            w.dqp[r] = ws.dqp.data() + (cell * p.C + slot) * l.Dkp;
            w.stats[r] = ws.stats[static_cast<std::size_t>(cell)];
            w.vis[r] = seg.end - seg.begin;
            if (bf16_dot) {
                pw.q[r] = ws.qp.data() + cell * l.Dk2;
                pw.dO[r] = ws.dOp.data() + cell * l.Dv2;
                if (pair_rows && r % 2 == 0) {  // rows r, r + 1 are heads g, g + 1 of token t (r0, G even)
                    const std::int64_t head_pair = cell / 2;
                    pw.qh[r / 2] = ws.qh.data() + head_pair * l.Dkp;
                    pw.dOh[r / 2] = ws.dOh.data() + head_pair * l.Dvp;
                }
            }
        }
        bool tile_finite = block_finite;
        for (std::int64_t r = 0; r < rows; ++r) tile_finite = tile_finite && w.stats[r].finite;
        if (!tile_finite) {
            block_tile_exact(l, w, rows, static_cast<float>(p.scale), dk, dv);
            continue;
        }
        if (bf16_dot) {
            gemm_bf16_tiles(rows, l.bsp, l.Dk2, GatheredPairedA{pw.q}, PairedB{pw.kt, l.bsp}, StridedC{w.s, l.bsp});
            gemm_bf16_tiles(rows, l.bsp, l.Dv2, GatheredPairedA{pw.dO}, PairedB{pw.vt, l.bsp}, StridedC{w.dp, l.bsp});
        } else {
            gemm_tiles(rows, l.bsp, p.Dk, GatheredA{w.q}, StridedB{w.kt, l.bsp}, StridedC{w.s, l.bsp}, false);
            gemm_tiles(rows, l.bsp, p.Dv, GatheredA{w.dO}, StridedB{w.vt, l.bsp}, StridedC{w.dp, l.bsp}, false);
        }
        probabilities(l, w, rows, static_cast<float>(p.scale));
        if (pair_rows) {  // rows is even: G is, and kRowTile is
            const std::int64_t rows2 = rows / 2;
            pair_panel(w.s, rows2, l.bsp, pw.pt);
            pair_panel(w.dp, rows2, l.bsp, pw.dst);
            gemm_bf16_tiles(keys, l.Dvp, rows2, PairedA{pw.pt, 1, l.bsp}, GatheredPairedB{pw.dOh}, StridedC{dv, l.Dvp},
                            true);
            gemm_bf16_tiles(keys, l.Dkp, rows2, PairedA{pw.dst, 1, l.bsp}, GatheredPairedB{pw.qh}, StridedC{dk, l.Dkp},
                            true);
        } else {
            gemm_tiles(keys, l.Dvp, rows, StridedA{w.s, 1, l.bsp}, GatheredB{w.dO}, StridedC{dv, l.Dvp}, true);
            gemm_tiles(keys, l.Dkp, rows, StridedA{w.dp, 1, l.bsp}, GatheredB{w.q}, StridedC{dk, l.Dkp}, true);
        }
        if (bf16_dot) {
            const std::int64_t bsp2 = l.bsp / 2;
            for (std::int64_t r = 0; r < rows; ++r) pair_row(w.dp + r * l.bsp, l.bsp, pw.ds + r * bsp2);
            gemm_bf16_tiles(rows, l.Dkp, (keys + 1) / 2, PairedA{pw.ds, bsp2, 1}, PairedB{pw.krows, l.Dkp},
                            GatheredC{w.dqp});
        } else {
            gemm_tiles(rows, l.Dkp, keys, StridedA{w.dp, l.bsp, 1}, StridedB{w.krows, l.Dkp}, GatheredC{w.dqp},
                       false);
        }
    }
}

// dQ step for tokens [t0, t1) of the chunk starting at c0, kv head n2: each row's partials
// summed in slot order, times scale. acc: [Dkp].
template <class S>
NSA_AVX2 void dq_step(const Problem& p, const BackwardLayout& l, const BackwardWs& ws, std::int64_t n2,
                      std::int64_t c0, std::int64_t t0, std::int64_t t1, float* acc) {
    for (std::int64_t t = t0; t < t1; ++t) {
        const QueryRow row = locate_query(p, t);
        for (std::int64_t g = 0; g < p.G; ++g) {
            const std::int64_t h = n2 * p.G + g;
            const float* part = ws.dqp.data() + ((t - c0) * p.G + g) * p.C * l.Dkp;
            bool any = false;
            for (std::int64_t j = 0; row.batch >= 0 && j < p.C; ++j) {
                const std::int32_t x = *element<const std::int32_t>(p.topk, t, n2, j);
                if (x < 0) continue;
                const Segment seg = visible_part(p, row, x);
                if (seg.end == seg.begin) continue;
                const float* pj = part + j * l.Dkp;
                for (std::int64_t d = 0; d < l.Dkp; d += kLanes) {
                    const __m256 v = _mm256_loadu_ps(pj + d);
                    _mm256_storeu_ps(acc + d, any ? _mm256_add_ps(_mm256_loadu_ps(acc + d), v) : v);
                }
                any = true;
            }
            if (any)
                store_row_f32<S>(p.dq, t, h, acc, static_cast<float>(p.scale), p.Dk);
            else  // padding row or nothing visible
                store_zero_row<S>(p.dq, t, h, p.Dk);
        }
    }
}

// D = dO . o as one FMA chain in ascending d: the order the microkernel uses for dP = dO . v, so
// dP - D cancels exactly where o equals v (a row with one visible key).
NSA_AVX2 float fma_dot(const float* a, const float* b, std::int64_t n) {
    __m128 acc = _mm_setzero_ps();
    for (std::int64_t d = 0; d < n; ++d) acc = _mm_fmadd_ss(_mm_load_ss(a + d), _mm_load_ss(b + d), acc);
    return _mm_cvtss_f32(acc);
}

// Row i of the chunk starting at c0, for head group n2: q and dO as fp32 (and their pair forms
// with the bf16 dot) and the row statistics D = dO.o, max, 1/sum. o: [Dv] scratch, then (bf16
// dot) [Dv + 1] words for o's pairs.
template <class S>
void pack_chunk_token(const Problem& p, const BackwardLayout& l, const BackwardWs& ws, std::int64_t n2,
                      std::int64_t c0, std::int64_t i, float* o, bool bf16_dot) {
    const std::int64_t t = c0 + i;
    for (std::int64_t g = 0; g < p.G; ++g) {
        const std::int64_t h = n2 * p.G + g;
        float* q = ws.q.data() + (i * p.G + g) * l.Dkp;
        float* dO = ws.dO.data() + (i * p.G + g) * l.Dvp;
        load_row_padded<S>(p.q, t, h, q, p.Dk, l.Dkp);
        load_row_padded<S>(p.out_grad, t, h, dO, p.Dv, l.Dvp);
        load_row_f32<S>(p.out, t, h, o, p.Dv);
        float delta = 0.0f;
        if (bf16_dot) {
            // D by the bf16 dot tiles' chain for dP = dO . v, so they cancel where o equals v.
            std::uint32_t* dOp = ws.dOp.data() + (i * p.G + g) * l.Dv2;
            auto* op = reinterpret_cast<std::uint32_t*>(o + p.Dv);
            pair_row(q, p.Dk, ws.qp.data() + (i * p.G + g) * l.Dk2);
            pair_row(dO, p.Dv, dOp);
            pair_row(o, p.Dv, op);
            delta = bf16_pair_dot(dOp, op, l.Dv2);
            if (p.G % 2 == 0 && g % 2 == 1) {  // heads g - 1, g as one pair row
                const std::int64_t pair = i * (p.G / 2) + g / 2;
                pair_two_rows(q - l.Dkp, q, l.Dkp, ws.qh.data() + pair * l.Dkp);
                pair_two_rows(dO - l.Dvp, dO, l.Dvp, ws.dOh.data() + pair * l.Dvp);
            }
        } else {
            delta = fma_dot(dO, o, p.Dv);
        }
        ws.stats[static_cast<std::size_t>(i * p.G + g)] = {*element<const float>(p.softmax_max, t, h, 0),
                                                           1.0f / *element<const float>(p.softmax_sum, t, h, 0),
                                                           delta, all_finite(q, l.Dkp) && all_finite(dO, l.Dvp)};
    }
}

// Rounds head n2's accumulators into dk, dv (zeros for key rows past the last batch, which
// belong to no block).
template <class S>
void store_head(const Problem& p, const BackwardLayout& l, const BackwardWs& ws, std::int64_t n2, int threads) {
    constexpr std::int64_t kRows = 64;
    const std::int64_t valid_keys = p.batches.valid_keys();
    parallel_for((p.T2 + kRows - 1) / kRows, threads, [&](std::int64_t task, int) {
        for (std::int64_t t = task * kRows; t < std::min((task + 1) * kRows, p.T2); ++t) {
            if (t >= valid_keys) {
                store_zero_row<S>(p.dk, t, n2, p.Dk);
                store_zero_row<S>(p.dv, t, n2, p.Dv);
                continue;
            }
            store_row_f32<S>(p.dk, t, n2, ws.dk.data() + t * l.Dkp, static_cast<float>(p.scale), p.Dk);
            store_row_f32<S>(p.dv, t, n2, ws.dv.data() + t * l.Dvp, 1.0f, p.Dv);
        }
    });
}

template <class S>
void backward_typed(const Problem& p, std::span<std::byte> workspace) {
    const BackwardLayout l(p);
    Carver carver(workspace.data());
    BackwardWs ws = carve_backward(p, l, carver);
    const int threads = thread_count();
    build_reverse_index_slots(p, l.blocks, ws.index, threads);

    // Per-worker scratch.
    const std::size_t tw = static_cast<std::size_t>(threads);
    std::vector<const float*> qptr(tw * kRowTile), doptr(tw * kRowTile);
    std::vector<float*> dqptr(tw * kRowTile);
    std::vector<RowStats> stats(tw * kRowTile);
    std::vector<std::int64_t> vis(tw * kRowTile);
    // S and dP tiles, K and V rows and panels; with the bf16 dot the operands' pair forms.
    const bool bf16_dot = std::is_same_v<S, bf16_t> && use_bf16_dot();
    const std::size_t per_worker =
        static_cast<std::size_t>(checked_product({2, l.bsp, kRowTile + l.Dkp + l.Dvp}, "the block scratch"));
    std::vector<float> tiles_f(tw * per_worker);
    const std::size_t pair_words = bf16_dot ? static_cast<std::size_t>(pair_buffer_words(l)) : 0;
    std::vector<std::uint32_t> pair_buffers(tw * pair_words);
    std::vector<const std::uint32_t*> pair_ptrs(bf16_dot ? tw * 3 * kRowTile : 0);
    std::vector<float> dq_acc(tw * static_cast<std::size_t>(l.Dkp));
    std::vector<float> o_rows(tw * static_cast<std::size_t>(2 * p.Dv + 2));  // o, then its pairs

    std::vector<std::span<const std::int64_t>> work(static_cast<std::size_t>(l.nb));  // a chunk's entries per block
    std::vector<std::int64_t> order(static_cast<std::size_t>(l.nb));

    const std::int64_t valid = p.batches.valid_queries();
    for (std::int64_t n2 = 0; n2 < p.N2; ++n2) {
        parallel_for(2, threads, [&](std::int64_t which, int) {
            const std::span<float> acc = which == 0 ? ws.dk : ws.dv;
            std::fill(acc.begin(), acc.end(), 0.0f);
        });
        // Valid tokens of the chunk starting at c0, whose rows the chunk packs.
        const auto packed_tokens = [&](std::int64_t c0) {
            return std::max<std::int64_t>(0, std::min({c0 + l.chunk, p.T1, valid}) - c0);
        };
        const auto pack_task = [&](std::int64_t c0, std::int64_t i, int worker) {
            pack_chunk_token<S>(p, l, ws, n2, c0, i, o_rows.data() + static_cast<std::size_t>(worker * (2 * p.Dv + 2)),
                                bf16_dot);
        };
        parallel_for(packed_tokens(0), threads, [&](std::int64_t i, int worker) { pack_task(0, i, worker); });
        for (std::int64_t c0 = 0; c0 < p.T1; c0 += l.chunk) {
            const std::int64_t c1 = std::min(c0 + l.chunk, p.T1);
            const std::int64_t v1 = std::min(c1, valid);
            if (c0 < v1) {
                // Largest blocks first (the local and first blocks every token selects can hold 8x
                // the average rows), so the threads finish the step together. Claim order only:
                // each block is still one task that owns its accumulator rows.
                for (std::int64_t gb = 0; gb < l.nb; ++gb)
                    work[static_cast<std::size_t>(gb)] = chunk_entries(p, l, ws, n2, gb, c0, v1);
                for (std::int64_t gb = 0; gb < l.nb; ++gb) order[static_cast<std::size_t>(gb)] = gb;
                std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
                    return work[static_cast<std::size_t>(a)].size() > work[static_cast<std::size_t>(b)].size();
                });
                parallel_for(l.nb, threads, [&](std::int64_t task, int worker) {
                    const std::size_t o = static_cast<std::size_t>(worker) * kRowTile;
                    float* f = tiles_f.data() + static_cast<std::size_t>(worker) * per_worker;
                    float* kv = f + 2 * kRowTile * l.bsp;
                    const BlockScratch w{qptr.data() + o,
                                         doptr.data() + o,
                                         dqptr.data() + o,
                                         stats.data() + o,
                                         vis.data() + o,
                                         f,
                                         f + kRowTile * l.bsp,
                                         kv,
                                         kv + l.bsp * l.Dkp,
                                         kv + l.bsp * (l.Dkp + l.Dvp),
                                         kv + l.bsp * (2 * l.Dkp + l.Dvp),
                                         bf16_dot ? carve_pairs(l, pair_ptrs.data() + 3 * o,
                                                                pair_buffers.data() + worker * pair_words)
                                                  : BlockScratch::Pairs{}};
                    const std::int64_t gb = order[static_cast<std::size_t>(task)];
                    block_step<S>(p, l, ws, n2, gb, c0, work[static_cast<std::size_t>(gb)], w, bf16_dot);
                });
            }
            // One job: this chunk's dQ sums (they read only the partials) and the next chunk's rows
            // (which overwrite q, dO, stats, no longer read): one barrier per step instead of two.
            const std::int64_t groups = (c1 - c0 + kQueryTokens - 1) / kQueryTokens;
            const std::int64_t next = c1 < p.T1 ? packed_tokens(c1) : 0;
            parallel_for(groups + next, threads, [&](std::int64_t task, int worker) {
                if (task >= groups) return pack_task(c1, task - groups, worker);
                const std::int64_t t0 = c0 + task * kQueryTokens;
                dq_step<S>(p, l, ws, n2, c0, t0, std::min(t0 + kQueryTokens, c1),
                           dq_acc.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(l.Dkp));
            });
        }
        store_head<S>(p, l, ws, n2, threads);
    }
}

}  // namespace

std::size_t backward_workspace(const Problem& p) {
    Carver c;
    carve_backward(p, BackwardLayout(p), c);
    return c.size();
}

void run_backward(const Problem& p, std::span<std::byte> workspace) {
    with_float_storage(p.dtype, [&](auto* tag) { backward_typed<std::remove_pointer_t<decltype(tag)>>(p, workspace); });
}

void set_chunk_tokens_for_testing(std::int64_t tokens) noexcept { chunk_override = tokens; }

}  // namespace opennsa::detail::select_attention::avx2

#endif  // __x86_64__
