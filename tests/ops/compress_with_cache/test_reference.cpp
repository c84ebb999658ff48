// The oracle against an independent formulation: the training compression's float64 reference
// over each batch's tokens gathered into one contiguous sequence; the row of compressed index
// (L_b - l) / d must equal the decoding reference's row exactly (the same float64 sums in the
// same order).
#include <gtest/gtest.h>

#include "ops/compress/problem.hpp"
#include "ops/compress/reference.hpp"
#include "ops/compress_with_cache/cases.hpp"

using namespace cwc_test;
using nsa_test::case_seed;

TEST(CompressWithCacheReference, MatchesTrainingReferenceOnGatheredSequences) {
    std::mt19937_64 rng(case_seed(50));
    for (int i = 0; i < 20; ++i) {
        const Case c = random_case(rng, i % 2 ? DType::f32 : DType::bf16, i % 3 == 0);
        SCOPED_TRACE(c.describe());
        const Tensors t(c);
        const std::vector<double> ref = t.reference();
        std::size_t at = 0;
        for (std::int64_t b = 0; b < c.B(); ++b) {
            if (!c.triggered(b)) continue;
            const std::int64_t L = c.lens[static_cast<std::size_t>(b)];
            HostTensor x = guarded_tensor(c.dtype, {L, c.N, c.D}, {c.N * c.D, c.D, 1});
            for (std::int64_t p = 0; p < L; ++p)
                for (std::int64_t h = 0; h < c.N; ++h)
                    for (std::int64_t e = 0; e < c.D; ++e) {
                        // Tokens before the window may sit behind garbage entries: only the window is
                        // compared, so they are 0 here.
                        const bool in_window = p >= L - c.l;
                        set(x, {p, h, e}, in_window ? get(t.input, {t.page(b, p / c.P), p % c.P, h, e}) : 0.0);
                    }
            opennsa::CompressParams tp;
            tp.block_size = c.l, tp.stride = c.d, tp.seq_lens = {L};
            const std::int64_t Tc = opennsa::compressed_token_count(L, tp);
            HostTensor y = guarded_tensor(c.dtype, {Tc, c.N, c.D}, {c.N * c.D, c.D, 1});
            const auto train = opennsa::detail::compress::reference::forward(
                opennsa::detail::compress::validate_forward({x.view, t.weight.view, y.view}, tp));
            const std::size_t row = static_cast<std::size_t>((L - c.l) / c.d * c.N * c.D);
            for (std::size_t k = 0; k < static_cast<std::size_t>(c.N * c.D); ++k, ++at)
                ASSERT_EQ(ref[at], train[row + k]) << "batch " << b << " element " << k;
        }
        EXPECT_EQ(at, ref.size());
    }
}
