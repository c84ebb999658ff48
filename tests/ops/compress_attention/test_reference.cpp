// The oracle itself, against formulations that share nothing with it: a dense masked softmax over
// every compressed token of the batch (mask built from the rule), the importance score as the
// explicit double sum of docs/spec (over g and the pairs (a, b) with a + b = t), a ranking by
// repeated best pick, and the reference backward against central finite differences of the
// reference forward (fp64).
#include <gtest/gtest.h>

#include <limits>

#include "ops/compress_attention/cases.hpp"
#include "ops/compress_attention/scores.hpp"

using namespace nsa_test;

namespace {

struct Dense {
    std::vector<double> out;    // [T1][N1][Dv]
    std::vector<double> score;  // [T1][N2][max_ns]
};

// Query position i of batch b sees compressed position j, from the case's own description.
bool sees(const CompressTensors& t, std::int64_t i, std::int64_t j) {
    const CompressCase& c = t.c;
    if (c.sparse_mode == 2) return static_cast<double>(j) * static_cast<double>(c.d) + static_cast<double>(c.l) <= static_cast<double>(i) + 1;
    if (c.atten_mask) return t.mask.get(i, j) == 0;
    return true;
}

Dense dense_forward(const CompressTensors& t) {
    const CompressCase& c = t.c;
    const std::int64_t G = c.N1 / c.N2, m = c.sel / c.d, n = c.l / c.d;
    const std::int64_t max_ns = c.max_ns();
    const double scale = static_cast<float>(t.params.scale);
    Dense r;
    r.out.assign(static_cast<std::size_t>(c.T1() * c.N1 * c.Dv), 0.0);
    r.score.assign(static_cast<std::size_t>(c.T1() * c.N2 * max_ns), 0.0);
    const std::vector<std::int64_t> q_lens = c.varlen ? c.q_lens : std::vector<std::int64_t>{c.T1()};
    const std::vector<std::int64_t> c_lens = c.varlen ? c.c_lens : std::vector<std::int64_t>{c.T2()};
    std::int64_t q0 = 0, k0 = 0;
    for (std::size_t b = 0; b < q_lens.size(); ++b) {
        const std::int64_t C = c_lens[b], ns = (C + m - 1) / m;
        for (std::int64_t i = 0; i < q_lens[b]; ++i) {
            const std::int64_t tq = q0 + i;
            // P[g][j] over every compressed token: masked scores -inf, a row with none visible is 0.
            std::vector<std::vector<double>> P(static_cast<std::size_t>(c.N1), std::vector<double>(static_cast<std::size_t>(C), 0.0));
            for (std::int64_t h = 0; h < c.N1; ++h) {
                std::vector<double> s(static_cast<std::size_t>(C), -INFINITY);
                double mx = -INFINITY;
                bool any = false, nan = false;
                for (std::int64_t j = 0; j < C; ++j) {
                    if (!sees(t, i, j)) continue;
                    double dot = 0;
                    for (std::int64_t e = 0; e < c.Dk; ++e) dot += t.q.get(tq, h, e) * t.k.get(k0 + j, h / G, e);
                    s[static_cast<std::size_t>(j)] = scale * dot;
                    nan = nan || std::isnan(dot);
                    mx = std::max(mx, s[static_cast<std::size_t>(j)]);
                    any = true;
                }
                if (!any) continue;
                if (nan) mx = std::numeric_limits<double>::quiet_NaN();
                double sum = 0;
                for (std::int64_t j = 0; j < C; ++j) sum += std::exp(s[static_cast<std::size_t>(j)] - mx) * sees(t, i, j);
                for (std::int64_t j = 0; j < C; ++j) {
                    if (!sees(t, i, j)) continue;
                    const double p = std::exp(s[static_cast<std::size_t>(j)] - mx) / sum;
                    P[static_cast<std::size_t>(h)][static_cast<std::size_t>(j)] = p;
                    for (std::int64_t e = 0; e < c.Dv; ++e)
                        r.out[static_cast<std::size_t>((tq * c.N1 + h) * c.Dv + e)] += p * t.v.get(k0 + j, h / G, e);
                }
            }
            // score[J] = sum over g, a < m, b < n of P[g][(J + 1) m - (a + b)], in range only.
            for (std::int64_t n2 = 0; n2 < c.N2; ++n2)
                for (std::int64_t J = 0; J < ns; ++J) {
                    double sc = 0;
                    for (std::int64_t g = 0; g < G; ++g)
                        for (std::int64_t a = 0; a < m; ++a)
                            for (std::int64_t bb = 0; bb < n; ++bb) {
                                const std::int64_t j = (J + 1) * m - (a + bb);
                                if (j >= 0 && j < C) sc += P[static_cast<std::size_t>(n2 * G + g)][static_cast<std::size_t>(j)];
                            }
                    r.score[static_cast<std::size_t>((tq * c.N2 + n2) * max_ns + J)] = sc;
                }
        }
        q0 += q_lens[b];
        k0 += C;
    }
    return r;
}

// The ranking by repeated best pick: forced (lowest index), else NaN (lowest index), else the
// largest score (lowest index among equals).
std::vector<std::int32_t> pick_ranking(const double* score, const std::uint8_t* forced, std::int64_t ns, std::int64_t k) {
    std::vector<std::int32_t> out;
    std::vector<char> taken(static_cast<std::size_t>(ns), 0);
    auto better = [&](std::int64_t a, std::int64_t b) {  // a strictly better than the current best b
        if (b < 0) return true;
        const int ka = forced[a] ? 0 : std::isnan(score[a]) ? 1 : 2, kb = forced[b] ? 0 : std::isnan(score[b]) ? 1 : 2;
        if (ka != kb) return ka < kb;
        return ka == 2 && score[a] > score[b];  // scanning up, so an equal later one never wins
    };
    for (std::int64_t s = 0; s < k; ++s) {
        std::int64_t best = -1;
        for (std::int64_t J = 0; J < ns; ++J)
            if (!taken[static_cast<std::size_t>(J)] && better(J, best)) best = J;
        if (best >= 0) taken[static_cast<std::size_t>(best)] = 1;
        out.push_back(static_cast<std::int32_t>(best));
    }
    return out;
}

void expect_reference_matches_dense(const CompressCase& c) {
    SCOPED_TRACE(c.describe());
    CompressTensors t(c);
    const ca::Problem p = t.forward_problem();
    const auto ref = ca::reference::forward(p);
    const Dense dense = dense_forward(t);
    EXPECT_TRUE(close_with_nan(ref.out, dense.out, 1e-12, "reference out vs dense"));
    EXPECT_TRUE(close_with_nan(ref.score, dense.score, 1e-12, "reference score vs the explicit double sum"));
    for (std::int64_t b = 0; b < p.batches.count(); ++b)
        for (std::int64_t tok = p.batches.q[b]; tok < p.batches.q[b + 1]; ++tok)
            for (std::int64_t n2 = 0; n2 < c.N2; ++n2) {
                const std::size_t base = static_cast<std::size_t>((tok * c.N2 + n2) * p.max_ns);
                const auto want = pick_ranking(ref.score.data() + base, ref.forced.data() + base, p.block_count(b), c.k);
                const std::vector<std::int32_t> got(ref.topk.begin() + (tok * c.N2 + n2) * c.k,
                                                    ref.topk.begin() + (tok * c.N2 + n2 + 1) * c.k);
                ASSERT_EQ(got, want) << "reference ranking of token " << tok << " kv head " << n2;
                for (std::int64_t J = 0; J < p.block_count(b); ++J) {
                    const std::int64_t i = tok - p.batches.q[b];
                    const bool f = c.forced > 0 && t.topk_mask.get(i, J) != 0;
                    ASSERT_EQ(ref.forced[base + static_cast<std::size_t>(J)] != 0, f) << "forced flag of block " << J;
                }
            }
}

double loss(const CompressTensors& t, const std::vector<double>& w) {
    const auto ref = ca::reference::forward(t.forward_problem());
    double l = 0;
    for (std::size_t i = 0; i < w.size(); ++i) l += w[i] * ref.out[i];
    return l;
}

// Central differences of L = sum(W * out) for every element of x, against `analytic`.
void check_gradient(CompressTensors& t, HostTensor& x, const std::vector<double>& analytic, const std::vector<double>& w,
                    const char* what) {
    const double eps = 1e-6;
    double max_grad = 0;
    for (double g : analytic) max_grad = std::max(max_grad, std::abs(g));
    ASSERT_GT(max_grad, 0.0) << what << " gradient is identically zero: the case tests nothing";
    std::size_t n = 0;
    for (std::int64_t i = 0; i < x.view.shape[0]; ++i)
        for (std::int64_t j = 0; j < x.view.shape[1]; ++j)
            for (std::int64_t k = 0; k < x.view.shape[2]; ++k, ++n) {
                const double x0 = x.get(i, j, k);
                x.set(i, j, k, x0 + eps);
                const double lp = loss(t, w);
                x.set(i, j, k, x0 - eps);
                const double lm = loss(t, w);
                x.set(i, j, k, x0);
                const double fd = (lp - lm) / (2 * eps);
                // The backward reads max / sum from fp32 tensors: about 1e-7 relative noise.
                ASSERT_NEAR(analytic[n], fd, 2e-6 * max_grad + 1e-8) << what << "[" << i << ", " << j << ", " << k << "]";
            }
}

CompressCase small_case(std::uint64_t salt, std::int64_t mode, bool mask) {
    CompressCase c;
    c.dtype = opennsa::DType::f64;
    c.N1 = 4;
    c.N2 = 2;
    c.Dk = 5;
    c.Dv = 3;
    c.l = 3;
    c.d = 2;
    c.sel = 4;
    c.k = 2;
    c.q_lens = {9, 0, 7};
    c.c_lens = {4, 2, 3};
    c.pad_q = 2;
    c.pad_kv = 1;
    c.varlen = true;
    c.sparse_mode = mode;
    c.atten_mask = mask;
    c.mask_density = 0.4;
    c.token_major = salt % 2 == 0;
    c.seed = case_seed(salt);
    return c;
}

}  // namespace

TEST(CompressReference, ForwardEqualsDenseMaskedAttentionAndExplicitScores) {
    std::mt19937_64 rng(case_seed(101));
    for (int i = 0; i < 40; ++i) expect_reference_matches_dense(random_compress_case(rng, i % 2 ? DType::f64 : DType::f32));
}

TEST(CompressReference, ConstructedCases) {
    // Exact ties (identical keys), NaN in a query row and in a key row, forced blocks, k > NS_b.
    CompressCase c = small_case(5, 1, false);
    c.dtype = DType::f32;
    c.identical_keys = true;
    c.forced = 0.2;
    c.k = 5;
    expect_reference_matches_dense(c);
    c.nan_query_row = 3;
    c.identical_keys = false;
    expect_reference_matches_dense(c);
    c.nan_query_row = -1;
    c.nan_key_row = 1;
    c.sparse_mode = 2;
    expect_reference_matches_dense(c);
}

TEST(CompressReference, StencilWeightsCountPairs) {
    for (std::int64_t m = 1; m <= 9; ++m)
        for (std::int64_t n = 1; n <= m; ++n)
            for (std::int64_t t = 0; t <= m + n - 2; ++t) {
                std::int64_t pairs = 0;
                for (std::int64_t a = 0; a < m; ++a)
                    for (std::int64_t b = 0; b < n; ++b) pairs += a + b == t;
                ASSERT_EQ(ca::stencil_weight(m, n, t), pairs) << "m=" << m << " n=" << n << " t=" << t;
            }
}

// The library's block scores (scores.hpp) for block lengths up to INT64_MAX (m = l' / d; any l'
// is allowed): the same sums as the reference, without the signed overflow of m + 1 - u and
// n - 2 + m - 1 that UBSan reported for l' = INT64_MAX, d = 1 (found by fuzz/capi_family through
// aclnnNsaCompressAttentionInfer, reproducer fuzz/findings/capi_family/found-select-block-size-int64-max).
TEST(CompressReference, BlockScoresTakeAnyBlockLength) {
    constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    for (std::int64_t m : {kMax, kMax - 1, std::int64_t{1} << 62, std::int64_t{1} << 31})
        for (std::int64_t n : {1, 2, 3, 4, 7})
            for (std::int64_t C = 1; C <= 9; ++C) {
                std::vector<double> psum(static_cast<std::size_t>(C));
                for (std::int64_t j = 0; j < C; ++j) psum[static_cast<std::size_t>(j)] = 0.125 * static_cast<double>(j + 1);
                double score = -1;  // one block: ceil(C / m) = 1
                ca::block_scores(m, n, psum.data(), C, 1, &score);
                EXPECT_EQ(score, ca::reference::block_scores(psum, 1, m, n)[0]) << "m=" << m << " n=" << n << " C=" << C;
            }
}

TEST(CompressReference, BackwardIsTheGradientOfTheForward) {
    const std::int64_t modes[][2] = {{1, 0}, {1, 1}, {0, 1}, {2, 0}, {2, 1}};
    for (const auto& mode : modes) {
        CompressTensors t(small_case(201 + static_cast<std::uint64_t>(mode[0] * 2 + mode[1]), mode[0], mode[1] != 0));
        SCOPED_TRACE(t.c.describe());
        t.set_forward_from_reference();  // out, max, sum of the forward; dO plays W
        const auto w = t.dO.dense();
        const auto grads = ca::reference::backward(t.backward_problem());
        check_gradient(t, t.q, grads.dq, w, "dq");
        check_gradient(t, t.k, grads.dk, w, "dk");
        check_gradient(t, t.v, grads.dv, w, "dv");
    }
}

TEST(CompressReference, LibraryFp64BackwardIsTheGradientOfTheForward) {
    // The generic path in fp64: the same finite-difference check on what the library computes.
    for (std::int64_t mode : {1, 2}) {
        CompressTensors t(small_case(301 + static_cast<std::uint64_t>(mode), mode, mode == 1));
        SCOPED_TRACE(t.c.describe());
        opennsa::compress_attention(t.forward_args(), t.params);
        const auto w = t.dO.dense();
        opennsa::compress_attention_backward(t.backward_args(), t.params);
        check_gradient(t, t.q, t.dq.dense(), w, "dq");
        check_gradient(t, t.k, t.dk.dense(), w, "dk");
        check_gradient(t, t.v, t.dv.dense(), w, "dv");
    }
}

TEST(CompressRanking, KeyedFp32RankingEqualsTheComparatorAndTheReference) {
    // rank_blocks<float> sorts 64-bit keys, rank_blocks<double> the comparator; both against the
    // reference's stable sort, on scores with NaN, +-0, negatives, infinities, ties and forced blocks.
    std::mt19937_64 rng(case_seed(404));
    const float specials[] = {0.0f, -0.0f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity(), -1.5f, 1.0f, 1e-40f};
    for (int round = 0; round < 500; ++round) {
        const std::int64_t ns = std::uniform_int_distribution<std::int64_t>(1, 70)(rng);
        const std::int64_t k = std::uniform_int_distribution<std::int64_t>(1, 80)(rng);
        std::vector<float> sf(static_cast<std::size_t>(ns));
        std::vector<double> sd(sf.size());
        std::vector<std::uint8_t> forced(sf.size());
        for (std::size_t J = 0; J < sf.size(); ++J) {
            const auto pick = rng() % 4;
            sf[J] = pick == 0 ? specials[rng() % 8] : pick == 1 ? static_cast<float>(rng() % 4) : std::ldexp(static_cast<float>(rng() % 1000), -7);
            sd[J] = sf[J];
            forced[J] = rng() % 7 == 0;
        }
        std::vector<std::uint64_t> scratch(sf.size());
        std::vector<std::int32_t> by_key(static_cast<std::size_t>(k)), by_comparator(static_cast<std::size_t>(k));
        ca::rank_blocks(sf.data(), forced.data(), ns, k, scratch.data(), by_key.data());
        ca::rank_blocks(sd.data(), forced.data(), ns, k, scratch.data(), by_comparator.data());
        ASSERT_EQ(by_key, by_comparator) << "round " << round;
        ASSERT_EQ(by_key, ca::reference::rank(sd, forced, k)) << "round " << round;
    }
}
