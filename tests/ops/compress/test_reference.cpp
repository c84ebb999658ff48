// The oracle itself. The reference forward equals a dense product per head with a [Tc x T]
// weight matrix built from the window placement (worked out here from the batch lengths, not
// from the library's Batches); the reference backward equals that matrix's transpose applied to
// outputGrad and the band sums of outputGrad x input^T, and is the finite-difference gradient of
// the forward. Also the token counts of compressed_token_count / compressed_seq_lens.
#include <gtest/gtest.h>

#include "ops/compress/cases.hpp"

using namespace compress_test;
using nsa_test::case_seed;
using nsa_test::close;

namespace {

// For each compressed row: the batch's first input row and the window's first input row, found
// by trying every start position of every batch.
struct Placement {
    std::vector<std::int64_t> window_start;  // [Tc]
};

Placement place_windows(const Case& c) {
    Placement pl;
    std::int64_t s = 0;
    for (std::int64_t len : c.lens) {
        for (std::int64_t start = 0; start + c.l <= len; ++start)
            if (start % c.d == 0) pl.window_start.push_back(s + start);
        s += len;
    }
    return pl;
}

// M_h[o][t] = weight[t - start(o), h] inside the window of o, else 0.
std::vector<double> weight_matrix(const Tensors& t, const Placement& pl, std::int64_t h) {
    const std::int64_t T = t.c.T(), Tc = static_cast<std::int64_t>(pl.window_start.size());
    std::vector<double> m(static_cast<std::size_t>(Tc * T), 0.0);
    for (std::int64_t o = 0; o < Tc; ++o)
        for (std::int64_t r = 0; r < t.c.l; ++r)
            m[static_cast<std::size_t>(o * T + pl.window_start[o] + r)] = t.weight.get(r, h);
    return m;
}

std::vector<Case> cases(std::uint64_t salt) {
    std::mt19937_64 rng(case_seed(salt));
    std::vector<Case> out;
    for (int i = 0; i < 12; ++i) out.push_back(random_case(rng, DType::f64, i % 2 == 1));
    Case fixed;  // l and d not multiples of each other, a tail, an empty and a short batch, padding
    fixed.dtype = DType::f64;
    fixed.N = 3, fixed.D = 5, fixed.l = 7, fixed.d = 3;
    fixed.lens = {0, 20, 6, 7};
    fixed.pad = 2;
    fixed.seed = case_seed(salt + 1);
    out.push_back(fixed);
    return out;
}

}  // namespace

TEST(CompressReference, CountsMatchWindowPlacement) {
    std::mt19937_64 rng(case_seed(3));
    for (int i = 0; i < 50; ++i) {
        const Case c = random_case(rng, DType::f32, false);
        const Placement pl = place_windows(c);
        EXPECT_EQ(opennsa::compressed_token_count(c.T(), c.params()), static_cast<std::int64_t>(pl.window_start.size()))
            << c.describe();
        // The cumulative compressed lengths: one entry per entry of the array, the last Tc.
        const auto lens = opennsa::compressed_seq_lens(c.T(), c.params());
        ASSERT_EQ(lens.size(), c.params().seq_lens.size()) << c.describe();
        std::int64_t s = 0, o = 0;
        std::size_t b = c.leading_zero ? 1 : 0;
        if (c.leading_zero) {
            EXPECT_EQ(lens[0], 0);
        }
        for (std::int64_t len : c.lens) {
            s += len;
            while (o < static_cast<std::int64_t>(pl.window_start.size()) && pl.window_start[o] < s) ++o;
            EXPECT_EQ(lens[b++], o) << c.describe();
        }
    }
    // CANN's own example: cumulative [0, 128, 272], l = 32, d = 16 -> C = 0, 7, 8.
    opennsa::CompressParams p;
    p.block_size = 32;
    p.stride = 16;
    p.seq_lens = {0, 128, 272};
    EXPECT_EQ(opennsa::compressed_token_count(272, p), 15);
    EXPECT_EQ(opennsa::compressed_seq_lens(300, p), (std::vector<std::int64_t>{0, 7, 15}));
    p.seq_len_type = opennsa::kSeqLenPerBatch;
    p.seq_lens = {0, 128, 144};
    EXPECT_EQ(opennsa::compressed_seq_lens(272, p), (std::vector<std::int64_t>{0, 7, 15}));
}

TEST(CompressReference, ForwardEqualsDenseWeightMatrixProduct) {
    for (const Case& c : cases(11)) {
        SCOPED_TRACE(c.describe());
        const Tensors t(c);
        const Placement pl = place_windows(c);
        const std::int64_t T = c.T(), Tc = t.Tc;
        ASSERT_EQ(Tc, static_cast<std::int64_t>(pl.window_start.size()));
        std::vector<double> dense(static_cast<std::size_t>(Tc * c.N * c.D), 0.0);
        for (std::int64_t h = 0; h < c.N; ++h) {
            const auto m = weight_matrix(t, pl, h);
            for (std::int64_t o = 0; o < Tc; ++o)
                for (std::int64_t e = 0; e < c.D; ++e) {
                    double s = 0;
                    for (std::int64_t x = 0; x < T; ++x) s += m[static_cast<std::size_t>(o * T + x)] * t.input.get(x, h, e);
                    dense[static_cast<std::size_t>((o * c.N + h) * c.D + e)] = s;
                }
        }
        EXPECT_TRUE(close(t.reference_forward(), dense, 1e-13, "output"));
    }
}

TEST(CompressReference, BackwardEqualsTransposedProductAndBandSums) {
    for (const Case& c : cases(12)) {
        SCOPED_TRACE(c.describe());
        const Tensors t(c);
        const Placement pl = place_windows(c);
        const std::int64_t T = c.T(), Tc = t.Tc;
        std::vector<double> dx(static_cast<std::size_t>(T * c.N * c.D), 0.0), dw(static_cast<std::size_t>(c.l * c.N), 0.0);
        for (std::int64_t h = 0; h < c.N; ++h) {
            const auto m = weight_matrix(t, pl, h);
            for (std::int64_t x = 0; x < T; ++x)
                for (std::int64_t e = 0; e < c.D; ++e) {
                    double s = 0;
                    for (std::int64_t o = 0; o < Tc; ++o)
                        s += m[static_cast<std::size_t>(o * T + x)] * t.output_grad.get(o, h, e);
                    dx[static_cast<std::size_t>((x * c.N + h) * c.D + e)] = s;
                }
            // P = outputGrad_h input_h^T; weightGrad[r, h] sums P[o][start(o) + r].
            for (std::int64_t o = 0; o < Tc; ++o)
                for (std::int64_t x = 0; x < T; ++x) {
                    const std::int64_t r = x - pl.window_start[o];
                    if (r < 0 || r >= c.l) continue;
                    double s = 0;
                    for (std::int64_t e = 0; e < c.D; ++e) s += t.output_grad.get(o, h, e) * t.input.get(x, h, e);
                    dw[static_cast<std::size_t>(r * c.N + h)] += s;
                }
        }
        const auto g = t.reference_backward();
        EXPECT_TRUE(close(g.input_grad, dx, 1e-13, "inputGrad"));
        EXPECT_TRUE(close(g.weight_grad, dw, 1e-13, "weightGrad"));
        if (Tc > 0) {
            double mx = 0;
            for (double v : dw) mx = std::max(mx, std::abs(v));
            EXPECT_GT(mx, 0.0) << "weight gradient identically zero: the case tests nothing";
        }
    }
}

// L = sum(outputGrad * output): its central differences with respect to every input and weight
// element are the reference backward's inputGrad and weightGrad.
TEST(CompressReference, BackwardIsFiniteDifferenceOfForward) {
    Case c;
    c.dtype = DType::f64;
    c.N = 2, c.D = 3, c.l = 5, c.d = 2;
    c.lens = {11, 4, 8};
    c.pad = 1;
    c.input = Layout::gapped;
    c.weight = Layout::reversed;
    c.seed = case_seed(21);
    Tensors t(c);
    const auto dO = t.output_grad.dense();
    auto loss = [&] {
        const auto out = t.reference_forward();
        double s = 0;
        for (std::size_t i = 0; i < out.size(); ++i) s += dO[i] * out[i];
        return s;
    };
    const auto g = t.reference_backward();
    const double eps = 1e-4;
    auto check = [&](Strided& x, const std::vector<double>& analytic, const char* what) {
        std::size_t n = 0;
        for (std::int64_t i = 0; i < x.dim(0); ++i)
            for (std::int64_t j = 0; j < x.dim(1); ++j)
                for (std::int64_t k = 0; k < x.dim(2); ++k, ++n) {
                    const double x0 = x.get(i, j, k);
                    x.set(i, j, k, x0 + eps);
                    const double lp = loss();
                    x.set(i, j, k, x0 - eps);
                    const double lm = loss();
                    x.set(i, j, k, x0);
                    EXPECT_NEAR((lp - lm) / (2 * eps), analytic[n], 1e-8) << what << " [" << i << ", " << j << ", " << k << "]";
                }
    };
    check(t.input, g.input_grad, "inputGrad");
    check(t.weight, g.weight_grad, "weightGrad");
}
