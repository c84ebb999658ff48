// Forward pass (docs/spec/compress_attention.md sections 5-7), generic path, and the dispatch.
//
// K and V of the batches are packed once per call into dense accumulation-type rows per kv head.
// A task is (query tile of one batch, kv head): per token, the visible compressed positions are
// found once for the G query heads of the kv head; per (token, head) row the scores, max, exp,
// sum and weighted sum of V follow, and the row's probabilities are added to the token's
// per-position sum, from which the block scores and the top-k are taken. Each (token, head) row
// and each (token, kv head) topk row is written by one task, in a fixed order.
#include <cmath>
#include <limits>
#include <vector>

#include "core/threading.hpp"
#include "core/workspace.hpp"
#include "kernels/pack.hpp"
#include "kernels/portable.hpp"
#include "ops/compress_attention/avx2.hpp"
#include "ops/compress_attention/passes.hpp"
#include "ops/compress_attention/scores.hpp"

namespace opennsa::detail::compress_attention {
namespace {

// Query tokens per generic forward / dQ task.
constexpr std::int64_t kTileTokens = 8;

template <class A>
struct PackedKV {
    std::span<A> k, v;  // [N2][valid keys][Dk], [N2][valid keys][Dv]
};

template <class A>
PackedKV<A> carve_kv(const Problem& p, Carver& c) {
    const std::int64_t keys = p.batches.valid_keys();
    return {c.take<A>({p.N2, keys, p.Dk}), c.take<A>({p.N2, keys, p.Dv})};
}

template <class S>
void forward_impl(const Problem& p, std::span<std::byte> workspace) {
    using A = Accum<S>;
    Carver carver(workspace.data());
    const PackedKV<A> kv = carve_kv<A>(p, carver);
    const int threads = thread_count();
    const std::int64_t keys = p.batches.valid_keys();
    // Compressed rows past the last batch are never read.
    pack_heads<S>(p.k, keys, p.N2, p.Dk, kv.k.data(), threads);
    pack_heads<S>(p.v, keys, p.N2, p.Dv, kv.v.data(), threads);

    const std::size_t tw = static_cast<std::size_t>(threads);
    // Per-thread scratch: a query row, the row's scores, an output accumulator, the token's
    // per-position probability sums, its block scores, forced flags, ranking scratch, visible positions.
    const std::int64_t row_scratch =
        checked_add(checked_add(p.max_c, p.Dk + p.Dv, "the row scratch"), checked_add(p.max_c, p.max_ns, "the row scratch"),
                    "the row scratch");
    std::vector<A> scratch(static_cast<std::size_t>(checked_product({threads, row_scratch}, "the row scratch")));
    std::vector<std::int64_t> visible(tw * static_cast<std::size_t>(p.max_c));
    std::vector<std::uint8_t> forced(tw * static_cast<std::size_t>(p.max_ns));
    std::vector<std::uint64_t> ranking(tw * static_cast<std::size_t>(p.max_ns));
    std::vector<std::int32_t> tops(tw * static_cast<std::size_t>(p.sel_count));
    const A scale = static_cast<A>(static_cast<float>(p.scale));
    const std::vector<QueryTile> tiles = query_tiles(p, kTileTokens);

    parallel_for(static_cast<std::int64_t>(tiles.size()) * p.N2, threads, [&](std::int64_t task, int worker) {
        const std::int64_t n2 = task % p.N2;
        const QueryTile tile = tiles[static_cast<std::size_t>(task / p.N2)];
        const std::int64_t b = tile.batch, C = p.batches.key_count(b), kv0 = p.batches.kv[b];
        const std::int64_t ns = p.block_count(b);
        A* q = scratch.data() + worker * row_scratch;
        A* s = q + p.Dk;
        A* acc = s + p.max_c;
        A* psum = acc + p.Dv;  // per compressed position
        A* score = psum + p.max_c;
        std::int64_t* vis = visible.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(p.max_c);
        std::uint8_t* frc = forced.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(p.max_ns);
        std::uint64_t* rk = ranking.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(p.max_ns);
        std::int32_t* top = tops.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(p.sel_count);
        const A* K = kv.k.data() + n2 * keys * p.Dk;
        const A* V = kv.v.data() + n2 * keys * p.Dv;
        for (std::int64_t t = tile.t0; t < tile.t1; ++t) {
            const std::int64_t i = t - p.batches.q[b];
            std::int64_t nvis = 0;
            for (std::int64_t j = 0; j < p.visible_bound(i, C); ++j)
                if (!p.masked(i, j)) vis[nvis++] = kv0 + j;
            std::fill(psum, psum + C, A(0));
            for (std::int64_t h = n2 * p.G; h < (n2 + 1) * p.G; ++h) {
                const auto [st, sh] = p.stat_index(b, h, i);
                if (nvis == 0) {  // nothing visible: out = max = sum = 0, P = 0
                    store_zero_row<S>(p.out, t, h, p.Dv);
                    store_stat(p.softmax_max, st, sh, 0.0f);
                    store_stat(p.softmax_sum, st, sh, 0.0f);
                    continue;
                }
                load_row<S>(p.q, t, h, q, p.Dk);
                A mx = -std::numeric_limits<A>::infinity();
                for (std::int64_t x = 0; x < nvis; ++x) {
                    s[x] = scale * dot(q, K + vis[x] * p.Dk, p.Dk);
                    mx = max_nan(mx, s[x]);
                }
                A sum = 0;
                for (std::int64_t x = 0; x < nvis; ++x) {
                    s[x] = std::exp(s[x] - mx);
                    sum += s[x];
                }
                const A inv = A(1) / sum;
                std::fill(acc, acc + p.Dv, A(0));
                for (std::int64_t x = 0; x < nvis; ++x) {
                    axpy(s[x], V + vis[x] * p.Dv, acc, p.Dv);
                    psum[vis[x] - kv0] += s[x] * inv;
                }
                store_row<S>(p.out, t, h, acc, inv, p.Dv);
                store_stat(p.softmax_max, st, sh, static_cast<float>(mx));
                store_stat(p.softmax_sum, st, sh, static_cast<float>(sum));
            }
            block_scores(p, psum, C, ns, score);
            for (std::int64_t J = 0; J < ns; ++J) frc[J] = p.forced(i, J);
            rank_blocks(score, frc, ns, p.sel_count, rk, top);
            for (std::int64_t x = 0; x < p.sel_count; ++x) *element<std::int32_t>(p.topk, t, n2, x) = top[x];
        }
    });
}

}  // namespace

std::vector<QueryTile> query_tiles(const Problem& p, std::int64_t tokens) {
    std::vector<QueryTile> tiles;
    for (std::int64_t b = 0; b < p.batches.count(); ++b)
        for (std::int64_t t0 = p.batches.q[b]; t0 < p.batches.q[b + 1]; t0 += tokens)
            tiles.push_back({b, t0, std::min(t0 + tokens, p.batches.q[b + 1])});
    return tiles;
}

void write_padding_rows(const Problem& p) {
    for (std::int64_t t = p.batches.valid_queries(); t < p.T1; ++t) {
        for (std::int64_t h = 0; h < p.N1; ++h) {
            with_storage_type(p.dtype, [&](auto* tag) {
                store_zero_row<std::remove_pointer_t<decltype(tag)>>(p.out, t, h, p.Dv);
            });
            store_stat(p.softmax_max, t, h, 0.0f);
            store_stat(p.softmax_sum, t, h, 0.0f);
        }
        for (std::int64_t n2 = 0; n2 < p.N2; ++n2)
            for (std::int64_t x = 0; x < p.sel_count; ++x) *element<std::int32_t>(p.topk, t, n2, x) = -1;
    }
}

std::size_t generic_forward_workspace(const Problem& p) {
    return with_storage_type(p.dtype, [&](auto* tag) {
        using A = Accum<std::remove_pointer_t<decltype(tag)>>;
        Carver c;
        carve_kv<A>(p, c);
        return c.size();
    });
}

void generic_forward(const Problem& p, std::span<std::byte> workspace) {
    with_storage_type(p.dtype, [&](auto* tag) { forward_impl<std::remove_pointer_t<decltype(tag)>>(p, workspace); });
}

std::size_t forward_workspace(const Problem& p, KernelPath path) {
#if defined(__x86_64__)
    if (avx2_serves(p.dtype, path)) return avx2::forward_workspace(p);
#endif
    (void)path;
    return generic_forward_workspace(p);
}

void run_forward(const Problem& p, std::span<std::byte> workspace, KernelPath path) {
    write_padding_rows(p);
#if defined(__x86_64__)
    if (avx2_serves(p.dtype, path)) return avx2::run_forward(p, workspace);
#endif
    (void)path;
    generic_forward(p, workspace);
}

}  // namespace opennsa::detail::compress_attention
