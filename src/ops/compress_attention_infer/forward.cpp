// Forward pass, generic path (docs/spec/decoding.md section 2.3), and the dispatch.
//
// A task is (query token, kv head): the token's visible prefix of the batch's compressed cache is
// read once through the block table for the G query heads of the kv head; per head the scores,
// max, exp, sum and weighted sum of V; the probabilities summed over the heads give the block
// scores (shared with the training operator, compress_attention/scores.hpp), the forced blocks
// {0, NS_b - 2, NS_b - 1} and the top-k. Each (token, head) row and (token, kv head) topk row is
// written by one task, in a fixed order: the same bits for any thread count.
#include <cmath>
#include <limits>

#include "core/threading.hpp"
#include "kernels/portable.hpp"
#include "ops/compress_attention/scores.hpp"
#include "ops/compress_attention_infer/avx2.hpp"
#include "ops/compress_attention_infer/passes.hpp"

namespace opennsa::detail::compress_attention_infer {
namespace {

namespace ca = compress_attention;

template <class S>
void forward_impl(const Problem& p) {
    using A = Accum<S>;
    const int threads = thread_count();
    const std::vector<std::pair<std::int64_t, std::int64_t>> tokens = computed_tokens(p);
    // Per-thread scratch: the G query rows, their scores / exp values, output accumulators and
    // 1 / sum, one cache row, the token's summed probabilities, block scores; forced flags,
    // ranking scratch.
    const std::int64_t floats = checked_add(
        checked_product({p.G, checked_add(checked_add(p.Dk, p.max_c, "the row scratch"), p.Dv + 1, "the row scratch")},
                        "the row scratch"),
        checked_add(checked_add(p.Dk, p.max_c, "the row scratch"), p.max_ns, "the row scratch"), "the row scratch");
    std::vector<A> scratch(static_cast<std::size_t>(checked_product({threads, floats}, "the row scratch")));
    std::vector<std::uint8_t> forced(static_cast<std::size_t>(checked_product({threads, p.max_ns}, "the row scratch")));
    std::vector<std::uint64_t> ranking(forced.size());
    std::vector<std::int32_t> tops(static_cast<std::size_t>(checked_product({threads, p.sel_count}, "the row scratch")));
    const A scale = static_cast<A>(static_cast<float>(p.scale));

    parallel_for(static_cast<std::int64_t>(tokens.size()) * p.N2, threads, [&](std::int64_t task, int worker) {
        const std::int64_t n2 = task % p.N2;
        const std::int64_t b = tokens[static_cast<std::size_t>(task / p.N2)].first;  // (clang 14: lambdas cannot
        const std::int64_t s = tokens[static_cast<std::size_t>(task / p.N2)].second;  // capture bindings)
        const std::int64_t C = p.c_len[static_cast<std::size_t>(b)], vis = p.visible(b, s), ns = p.block_count(b);
        A* q = scratch.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(floats);  // [G][Dk]
        A* e = q + p.G * p.Dk;       // [G][max_c]
        A* acc = e + p.G * p.max_c;  // [G][Dv]
        A* inv = acc + p.G * p.Dv;   // [G]
        A* row = inv + p.G;          // [Dk >= Dv]
        A* psum = row + p.Dk;        // [max_c]
        A* score = psum + p.max_c;   // [max_ns]
        std::uint8_t* frc = forced.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(p.max_ns);
        std::uint64_t* rk = ranking.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(p.max_ns);
        std::int32_t* top = tops.data() + static_cast<std::size_t>(worker) * static_cast<std::size_t>(p.sel_count);
        const TensorView qb = p.batch_view(p.q, b), ob = p.batch_view(p.out, b), tb = p.batch_view(p.topk, b);
        const TensorView kh = p.key.head_view(n2), vh = p.value.head_view(n2);
        const auto page_of = [&](std::int64_t j) { return p.table.at(b, j / p.key.page_size); };
        const std::int64_t P = p.key.page_size;

        for (std::int64_t g = 0; g < p.G; ++g) load_row<S>(qb, s, n2 * p.G + g, q + g * p.Dk, p.Dk);
        for (std::int64_t j = 0; j < vis; ++j) {
            load_row<S>(kh, page_of(j), j % P, row, p.Dk);
            for (std::int64_t g = 0; g < p.G; ++g) e[g * p.max_c + j] = scale * dot(q + g * p.Dk, row, p.Dk);
        }
        std::fill(acc, acc + p.G * p.Dv, A(0));
        std::fill(psum, psum + C, A(0));
        for (std::int64_t g = 0; g < p.G && vis > 0; ++g) {
            A* eg = e + g * p.max_c;
            A mx = -std::numeric_limits<A>::infinity();
            for (std::int64_t j = 0; j < vis; ++j) mx = max_nan(mx, eg[j]);
            A sum = 0;
            for (std::int64_t j = 0; j < vis; ++j) {
                eg[j] = std::exp(eg[j] - mx);
                sum += eg[j];
            }
            inv[g] = A(1) / sum;
        }
        for (std::int64_t j = 0; j < vis; ++j) {
            load_row<S>(vh, page_of(j), j % P, row, p.Dv);
            for (std::int64_t g = 0; g < p.G; ++g) {
                axpy(e[g * p.max_c + j], row, acc + g * p.Dv, p.Dv);
                psum[j] += e[g * p.max_c + j] * inv[g];
            }
        }
        for (std::int64_t g = 0; g < p.G; ++g) {
            if (vis == 0) store_zero_row<S>(ob, s, n2 * p.G + g, p.Dv);  // nothing visible: out 0, P 0
            else store_row<S>(ob, s, n2 * p.G + g, acc + g * p.Dv, inv[g], p.Dv);
        }
        ca::block_scores(p.m, p.n, psum, C, ns, score);
        for (std::int64_t J = 0; J < ns; ++J) frc[J] = Problem::forced(J, ns);
        ca::rank_blocks(score, frc, ns, p.sel_count, rk, top);
        for (std::int64_t x = 0; x < p.sel_count; ++x) *element<std::int32_t>(tb, s, n2, x) = top[x];
    });
}

}  // namespace

std::vector<std::pair<std::int64_t, std::int64_t>> computed_tokens(const Problem& p) {
    std::vector<std::pair<std::int64_t, std::int64_t>> tokens;
    for (std::int64_t b = 0; b < p.B; ++b)
        for (std::int64_t s = 0; s < p.q_len[static_cast<std::size_t>(b)]; ++s) tokens.emplace_back(b, s);
    return tokens;
}

void write_padding_rows(const Problem& p) {
    if (!p.bsnd) return;  // TND rows are exactly the query tokens
    for (std::int64_t b = 0; b < p.B; ++b) {
        const TensorView ob = p.batch_view(p.out, b), tb = p.batch_view(p.topk, b);
        for (std::int64_t s = p.q_len[static_cast<std::size_t>(b)]; s < p.Q; ++s) {
            for (std::int64_t h = 0; h < p.N1; ++h)
                with_storage_type(p.dtype, [&](auto* tag) {
                    store_zero_row<std::remove_pointer_t<decltype(tag)>>(ob, s, h, p.Dv);
                });
            for (std::int64_t n2 = 0; n2 < p.N2; ++n2)
                for (std::int64_t x = 0; x < p.sel_count; ++x) *element<std::int32_t>(tb, s, n2, x) = -1;
        }
    }
}

void generic_forward(const Problem& p) {
    with_storage_type(p.dtype, [&](auto* tag) { forward_impl<std::remove_pointer_t<decltype(tag)>>(p); });
}

std::size_t forward_workspace(const Problem& p, KernelPath path) {
#if defined(__x86_64__)
    if (avx2_serves(p.dtype, path)) return avx2::forward_workspace(p);
#endif
    (void)p;
    (void)path;
    return 0;  // the generic pass keeps per-thread scratch only
}

void run_forward(const Problem& p, std::span<std::byte> workspace, KernelPath path) {
#if defined(__x86_64__)
    if (avx2_serves(p.dtype, path)) {
        avx2::run_forward(p, workspace);
        return write_padding_rows(p);
    }
#endif
    (void)path;
    (void)workspace;
    generic_forward(p);
    write_padding_rows(p);
}

}  // namespace opennsa::detail::compress_attention_infer
