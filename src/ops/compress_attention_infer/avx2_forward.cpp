// Forward pass, AVX2 + FMA path: split-K over the compressed cache, so that one sequence (batch 1)
// also keeps every core busy, and the G query heads (times the step's query tokens) of a kv head
// against a chunk of compressed keys as small matmuls on the register-tiled microkernels.
//
// Pass 1, task (batch, kv head, chunk of kChunkKeys compressed keys): the chunk's keys are read
// once from the pages, widened to an fp32 K^T panel and V rows;
//   S = Q K^T (rows = tokens x G heads, token-major), per row scaled, blended with the token's
//     visible prefix (-inf elsewhere), the chunk's NaN-keeping max m_c, E = exp(s - m_c) (0 where
//     invisible) and sum l_c (softmax_row, shared with the training operator);
//   O_c = E V (unnormalised).
// E, O_c, m_c and l_c go to the workspace.
// Pass 2, task (batch, kv head, token): per row the chunks merge in ascending order
// (M = max m_c, L = sum l_c exp(m_c - M), out = sum O_c exp(m_c - M) / L, rounded once); then the
// final P of every position, E exp(m_c - M) / L summed over the G heads (sum_heads), the block
// scores, the forced blocks and the top-k (compress_attention/scores.hpp).
//
// Every task's work and every reduction order are fixed by the problem: the same bits for any
// thread count. A chunk whose V holds an inf or NaN computes O_c key by key over the visible keys
// only (the same FMA chain as the microkernel, so the same bits where all is finite), so that the
// exact zeros of invisible keys never meet it.
#include "ops/compress_attention_infer/avx2.hpp"

#if defined(__x86_64__)
#include <cmath>
#include <limits>
#include <vector>

#include "core/workspace.hpp"
#include "kernels/portable.hpp"
#include "ops/compress_attention/scores.hpp"
#include "ops/compress_attention_infer/passes.hpp"
#include "kernels/avx2/core.hpp"
#include "ops/compress_attention/avx2_common.hpp"

namespace opennsa::detail::compress_attention_infer::avx2 {
namespace {

using namespace opennsa::detail::avx2;
namespace ca = compress_attention;
using ca::avx2::softmax_row;
using ca::avx2::sum_heads;
constexpr std::int64_t CH = kChunkKeys;

// Sizes and workspace offsets derived from the problem alone.
struct Layout {
    std::int64_t Dkp = 0, Dvp = 0, max_rows = 0, max_chunks = 0;
    struct Batch {
        std::int64_t rows = 0, reach = 0, chunks = 0;  // Q_b * G, visible(b, Q_b - 1), ceil(reach / CH)
        std::int64_t e = 0, o = 0, st = 0;             // workspace offsets (floats) of kv head 0
    };
    std::vector<Batch> batches;
    std::int64_t e_floats = 0, o_floats = 0, st_floats = 0;
    struct Task {
        std::int64_t b, n2, c;
    };
    std::vector<Task> tasks;

    explicit Layout(const Problem& p) : Dkp(padded(p.Dk)), Dvp(padded(p.Dv)) {
        for (std::int64_t b = 0; b < p.B; ++b) {
            Batch x;
            const std::int64_t q = p.q_len[static_cast<std::size_t>(b)];
            x.rows = checked_product({q, p.G}, "the query rows");
            x.reach = p.visible(b, q - 1);  // the visible prefix grows with the token
            x.chunks = ceil_div(x.reach, CH);
            x.e = e_floats;
            x.o = o_floats;
            x.st = st_floats;
            const std::int64_t per_head = checked_product({x.chunks, x.rows}, "the chunk rows");
            e_floats = checked_add(e_floats, checked_product({p.N2, per_head, CH}, "the workspace"), "the workspace");
            o_floats = checked_add(o_floats, checked_product({p.N2, per_head, Dvp}, "the workspace"), "the workspace");
            st_floats = checked_add(st_floats, checked_product({p.N2, per_head, 2}, "the workspace"), "the workspace");
            max_rows = std::max(max_rows, x.rows);
            max_chunks = std::max(max_chunks, x.chunks);
            batches.push_back(x);
        }
    }
    void make_tasks(const Problem& p) {
        for (std::int64_t b = 0; b < p.B; ++b)
            for (std::int64_t n2 = 0; n2 < p.N2; ++n2)
                for (std::int64_t c = 0; c < batches[static_cast<std::size_t>(b)].chunks; ++c) tasks.push_back({b, n2, c});
    }
    // Chunk c of (b, n2): its first row of E [rows][CH], O [rows][Dvp], stats [rows][2].
    std::int64_t chunk_index(std::int64_t b, std::int64_t n2, std::int64_t c) const {
        const Batch& x = batches[static_cast<std::size_t>(b)];
        return n2 * x.chunks + c;
    }
};

struct Workspace {
    std::span<float> e, o, st;
};

Workspace carve(const Layout& l, Carver& c) {
    return {c.take<float>(l.e_floats), c.take<float>(l.o_floats), c.take<float>(l.st_floats)};
}

// Per-worker scratch of pass 1.
struct ChunkScratch {
    float* q;            // [max_rows][Dkp]
    float* kt;           // [Dkp][CH]
    float* v;            // [CH][Dvp]
    float* rows8;        // [8][Dkp]
    std::uint8_t* vis;   // [max_q][CH]
};

// The visibility bytes of lanes [0, np): 1 below `count`.
inline void prefix_lanes(std::uint8_t* vis, std::int64_t count, std::int64_t np) {
    for (std::int64_t j = 0; j < np; ++j) vis[j] = j < count;
}

NSA_AVX2 bool all_finite(const float* x, std::int64_t n) {
    const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
    __m256 ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for (std::int64_t i = 0; i < n; i += kLanes)  // n is a multiple of 8
        ok = _mm256_and_ps(ok, _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), abs), inf, _CMP_LT_OQ));
    return _mm256_movemask_ps(ok) == 0xff;
}

template <class S>
NSA_AVX2 void chunk_task(const Problem& p, const Layout& l, const Workspace& ws, const Layout::Task& t,
                         const ChunkScratch& w) {
    const Layout::Batch& x = l.batches[static_cast<std::size_t>(t.b)];
    const std::int64_t j0 = t.c * CH, nk = std::min(CH, x.reach - j0), np = padded(nk);
    const std::int64_t P = p.key.page_size, ci = l.chunk_index(t.b, t.n2, t.c);
    float* E = ws.e.data() + x.e + ci * x.rows * CH;
    float* O = ws.o.data() + x.o + ci * x.rows * l.Dvp;
    float* st = ws.st.data() + x.st + ci * x.rows * 2;
    const TensorView qb = p.batch_view(p.q, t.b), kh = p.key.head_view(t.n2), vh = p.value.head_view(t.n2);
    const auto page_of = [&](std::int64_t j) { return p.table.at(t.b, j / P); };

    // Q rows (token-major) and the chunk's K^T panel, 8 keys at a time through an 8x8 transpose.
    for (std::int64_t r = 0; r < x.rows; ++r)
        load_row_padded<S>(qb, r / p.G, t.n2 * p.G + r % p.G, w.q + r * l.Dkp, p.Dk, l.Dkp);
    for (std::int64_t k0 = 0; k0 < np; k0 += kLanes) {
        const std::int64_t n8 = std::min<std::int64_t>(kLanes, nk - k0);
        for (std::int64_t i = 0; i < n8; ++i) {
            const std::int64_t j = j0 + k0 + i;
            load_row_padded<S>(kh, page_of(j), j % P, w.rows8 + i * l.Dkp, p.Dk, l.Dkp);
        }
        std::fill(w.rows8 + n8 * l.Dkp, w.rows8 + kLanes * l.Dkp, 0.0f);
        for (std::int64_t d0 = 0; d0 < l.Dkp; d0 += kLanes) transpose8x8(w.rows8 + d0, l.Dkp, w.kt + d0 * CH + k0, CH);
    }
    gemm_tiles(x.rows, np, p.Dk, StridedA{w.q, l.Dkp, 1}, StridedB{w.kt, CH}, StridedC{E, CH}, false);

    // Softmax pieces per row; a token that sees none of the chunk has E = 0, m_c = -inf, l_c = 0.
    const float scale = static_cast<float>(p.scale);
    bool partial = false;  // some token sees only part of the chunk
    for (std::int64_t s = 0; s < x.rows / p.G; ++s) {
        const std::int64_t count = std::clamp<std::int64_t>(p.visible(t.b, s) - j0, 0, nk);
        partial = partial || count < nk;
        std::uint8_t* vis = w.vis + s * CH;
        prefix_lanes(vis, count, np);
        for (std::int64_t r = s * p.G; r < (s + 1) * p.G; ++r) {
            float mx = -std::numeric_limits<float>::infinity(), sum = 0.0f;
            if (count > 0) softmax_row(E + r * CH, vis, np, scale, &mx, &sum);
            else std::fill(E + r * CH, E + r * CH + np, 0.0f);
            st[2 * r] = mx;
            st[2 * r + 1] = sum;
        }
    }

    // V rows, then O_c = E V.
    for (std::int64_t i = 0; i < nk; ++i) {
        const std::int64_t j = j0 + i;
        load_row_padded<S>(vh, page_of(j), j % P, w.v + i * l.Dvp, p.Dv, l.Dvp);
    }
    if (!partial || all_finite(w.v, nk * l.Dvp)) {
        gemm_tiles(x.rows, l.Dvp, nk, StridedA{E, CH, 1}, StridedB{w.v, l.Dvp}, StridedC{O, l.Dvp}, false);
        return;
    }
    for (std::int64_t r = 0; r < x.rows; ++r) {
        const std::int64_t count = std::clamp<std::int64_t>(p.visible(t.b, r / p.G) - j0, 0, nk);
        for (std::int64_t e = 0; e < l.Dvp; ++e) {
            float acc = 0.0f;
            for (std::int64_t i = 0; i < count; ++i) acc = std::fma(E[r * CH + i], w.v[i * l.Dvp + e], acc);
            O[r * l.Dvp + e] = acc;
        }
    }
}

// Per-worker scratch of pass 2.
struct TokenScratch {
    float* acc;      // [Dvp]
    float* factor;   // [max_chunks][G]: exp(m_c - M) / L per chunk and head
    float* psum;     // [max_chunks * CH + padded(max_c)]
    float* score;    // [max_ns]
    std::uint8_t* vis;      // [CH]
    std::uint8_t* forced;   // [max_ns]
    std::uint64_t* ranking; // [max_ns]
    std::int32_t* top;      // [k]
};

NSA_AVX2 void axpy8(float a, const float* x, float* y, std::int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    for (std::int64_t i = 0; i < n; i += kLanes)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
}

template <class S>
NSA_AVX2 void token_task(const Problem& p, const Layout& l, const Workspace& ws, std::int64_t b, std::int64_t s,
                         std::int64_t n2, const TokenScratch& w) {
    const Layout::Batch& x = l.batches[static_cast<std::size_t>(b)];
    const std::int64_t C = p.c_len[static_cast<std::size_t>(b)], ns = p.block_count(b), vis = p.visible(b, s);
    const TensorView ob = p.batch_view(p.out, b), tb = p.batch_view(p.topk, b);
    for (std::int64_t g = 0; g < p.G; ++g) {
        const std::int64_t r = s * p.G + g, h = n2 * p.G + g;
        if (vis == 0) {  // nothing visible: out 0, P 0
            store_zero_row<S>(ob, s, h, p.Dv);
            for (std::int64_t c = 0; c < x.chunks; ++c) w.factor[c * p.G + g] = 0.0f;
            continue;
        }
        const auto stat = [&](std::int64_t c) { return ws.st.data() + x.st + (l.chunk_index(b, n2, c) * x.rows + r) * 2; };
        float M = -std::numeric_limits<float>::infinity();
        for (std::int64_t c = 0; c < x.chunks; ++c) M = max_nan(M, stat(c)[0]);
        float L = 0.0f;
        std::fill(w.acc, w.acc + l.Dvp, 0.0f);
        for (std::int64_t c = 0; c < x.chunks; ++c) {
            const float f = std::exp(stat(c)[0] - M);
            w.factor[c * p.G + g] = f;
            L += stat(c)[1] * f;
            axpy8(f, ws.o.data() + x.o + (l.chunk_index(b, n2, c) * x.rows + r) * l.Dvp, w.acc, l.Dvp);
        }
        const float inv = 1.0f / L;
        for (std::int64_t c = 0; c < x.chunks; ++c) w.factor[c * p.G + g] *= inv;
        store_row_f32<S>(ob, s, h, w.acc, inv, p.Dv);
    }
    // The token's final P summed over its heads, chunk by chunk; positions past its reach are 0.
    for (std::int64_t c = 0; c < x.chunks; ++c) {
        const std::int64_t j0 = c * CH, nk = std::min(CH, x.reach - j0), np = padded(nk);
        prefix_lanes(w.vis, std::clamp<std::int64_t>(vis - j0, 0, nk), np);
        const float* E = ws.e.data() + x.e + (l.chunk_index(b, n2, c) * x.rows + s * p.G) * CH;
        sum_heads(E, CH, w.factor + c * p.G, p.G, np, w.vis, w.psum + j0);
    }
    std::fill(w.psum + x.reach, w.psum + std::max(C, x.reach), 0.0f);
    ca::block_scores(p.m, p.n, w.psum, C, ns, w.score);
    for (std::int64_t J = 0; J < ns; ++J) w.forced[J] = Problem::forced(J, ns);
    ca::rank_blocks(w.score, w.forced, ns, p.sel_count, w.ranking, w.top);
    for (std::int64_t k = 0; k < p.sel_count; ++k) *element<std::int32_t>(tb, s, n2, k) = w.top[k];
}

template <class S>
void forward_typed(const Problem& p, std::span<std::byte> workspace) {
    const int threads = thread_count();
    const std::size_t tw = static_cast<std::size_t>(threads);
    Layout l(p);
    l.make_tasks(p);
    Carver carver(workspace.data());
    const Workspace ws = carve(l, carver);

    // Pass 1: the chunks.
    const std::int64_t chunk_floats = checked_add(
        checked_product({l.max_rows, l.Dkp}, "the chunk scratch"),
        checked_add(checked_product({CH, l.Dkp + l.Dvp}, "the chunk scratch"), 8 * l.Dkp, "the chunk scratch"),
        "the chunk scratch");
    std::vector<float> floats(static_cast<std::size_t>(checked_product({threads, chunk_floats}, "the chunk scratch")));
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(checked_product({threads, p.max_q, CH}, "the chunk scratch")));
    parallel_for(static_cast<std::int64_t>(l.tasks.size()), threads, [&](std::int64_t task, int worker) {
        ChunkScratch w;
        w.q = floats.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(chunk_floats);
        w.kt = w.q + l.max_rows * l.Dkp;
        w.v = w.kt + l.Dkp * CH;
        w.rows8 = w.v + CH * l.Dvp;
        w.vis = bytes.data() + static_cast<std::size_t>(worker) * (bytes.size() / tw);
        chunk_task<S>(p, l, ws, l.tasks[static_cast<std::size_t>(task)], w);
    });

    // Pass 2: merge, scores and top-k per (token, kv head).
    const std::vector<std::pair<std::int64_t, std::int64_t>> tokens = computed_tokens(p);
    const std::int64_t psum_len = checked_add(checked_product({l.max_chunks, CH}, "the token scratch"),
                                              padded(p.max_c), "the token scratch");
    const std::int64_t token_floats = checked_add(
        checked_add(l.Dvp, checked_product({l.max_chunks, p.G}, "the token scratch"), "the token scratch"),
        checked_add(psum_len, p.max_ns, "the token scratch"), "the token scratch");
    std::vector<float> tf(static_cast<std::size_t>(checked_product({threads, token_floats}, "the token scratch")));
    std::vector<std::uint8_t> tb(tw * static_cast<std::size_t>(checked_add(CH, p.max_ns, "the token scratch")));
    std::vector<std::uint64_t> ranking(static_cast<std::size_t>(checked_product({threads, p.max_ns}, "the token scratch")));
    std::vector<std::int32_t> tops(static_cast<std::size_t>(checked_product({threads, p.sel_count}, "the token scratch")));
    parallel_for(static_cast<std::int64_t>(tokens.size()) * p.N2, threads, [&](std::int64_t task, int worker) {
        const std::size_t wk = static_cast<std::size_t>(worker);
        TokenScratch w;
        w.acc = tf.data() + wk * static_cast<std::size_t>(token_floats);
        w.factor = w.acc + l.Dvp;
        w.psum = w.factor + l.max_chunks * p.G;
        w.score = w.psum + psum_len;
        w.vis = tb.data() + wk * static_cast<std::size_t>(CH + p.max_ns);
        w.forced = w.vis + CH;
        w.ranking = ranking.data() + wk * static_cast<std::size_t>(p.max_ns);
        w.top = tops.data() + wk * static_cast<std::size_t>(p.sel_count);
        const auto [b, s] = tokens[static_cast<std::size_t>(task / p.N2)];
        token_task<S>(p, l, ws, b, s, task % p.N2, w);
    });
}

}  // namespace

std::size_t forward_workspace(const Problem& p) {
    Carver c;
    carve(Layout(p), c);
    return c.size();
}

void run_forward(const Problem& p, std::span<std::byte> workspace) {
    with_float_storage(p.dtype, [&](auto* tag) { forward_typed<std::remove_pointer_t<decltype(tag)>>(p, workspace); });
}

}  // namespace opennsa::detail::compress_attention_infer::avx2

#endif  // __x86_64__
