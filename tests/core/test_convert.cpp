// Conversions: every fp16 / bf16 pattern round-trips, and fp32 -> fp16 / bf16 rounds to the
// nearest representable value, ties to even.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/convert.hpp"
#include "support.hpp"

using namespace opennsa::detail;

namespace {

bool is_nan16(std::uint16_t h, bool bf) {
    return bf ? ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) : ((h & 0x7c00) == 0x7c00 && (h & 0x3ff));
}

void check_rounding(float f, bool bf) {
    const std::uint16_t r = bf ? f32_to_bf16(f) : f32_to_f16(f);
    auto decode = [&](std::uint16_t h) { return static_cast<double>(bf ? bf16_to_f32(h) : f16_to_f32(h)); };
    const double got = decode(r);
    if (std::isinf(got)) {  // overflow: |f| must be at least halfway past the largest finite value
        const double max_finite = bf ? 0x1.fep127 : 65504.0;
        const double half_ulp = bf ? 0x1p119 : 16.0;
        ASSERT_GE(std::abs(static_cast<double>(f)), max_finite + half_ulp) << f;
        return;
    }
    // Neighbours of r towards and away from zero (same sign).
    for (int step : {-1, 1}) {
        const std::uint16_t mag = static_cast<std::uint16_t>(r & 0x7fff);
        if ((step < 0 && mag == 0) || is_nan16(static_cast<std::uint16_t>(r + step), bf)) continue;
        const double other = decode(static_cast<std::uint16_t>(r + step));
        if (std::isinf(other)) continue;
        const double d_got = std::abs(got - f), d_other = std::abs(other - f);
        ASSERT_LE(d_got, d_other) << "f=" << f << " rounded to " << got << " but " << other << " is nearer";
        if (d_got == d_other) {
            ASSERT_EQ(r & 1, 0) << "tie at f=" << f << " must round to even";
        }
    }
}

}  // namespace

TEST(Dtype, Float16RoundTripsEveryPattern) {
    for (std::uint32_t h = 0; h < 65536; ++h) {
        const auto bits = static_cast<std::uint16_t>(h);
        const float f = f16_to_f32(bits);
        if (is_nan16(bits, false)) {
            ASSERT_TRUE(std::isnan(f));
            ASSERT_TRUE(is_nan16(f32_to_f16(f), false));
        } else {
            ASSERT_EQ(f32_to_f16(f), bits) << h;
        }
    }
    EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
    EXPECT_EQ(f16_to_f32(0x0001), 0x1p-24f);
    EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
    EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
}

TEST(Dtype, BFloat16RoundTripsEveryPattern) {
    for (std::uint32_t h = 0; h < 65536; ++h) {
        const auto bits = static_cast<std::uint16_t>(h);
        const float f = bf16_to_f32(bits);
        if (is_nan16(bits, true)) {
            ASSERT_TRUE(std::isnan(f));
            ASSERT_TRUE(is_nan16(f32_to_bf16(f), true));
        } else {
            ASSERT_EQ(f32_to_bf16(f), bits) << h;
        }
    }
}

TEST(Dtype, RoundsToNearestEven) {
    std::mt19937_64 rng(nsa_test::case_seed(11));
    std::uniform_int_distribution<std::uint32_t> bits;
    for (int i = 0; i < 200000; ++i) {
        float f = std::bit_cast<float>(bits(rng));
        if (std::isnan(f)) continue;
        check_rounding(f, true);
        // fp16: draw magnitudes near its range as well, so subnormals and overflow are covered.
        int e = 0;
        const float mantissa = std::frexp(f, &e);  // in [0.5, 1)
        check_rounding(std::ldexp(mantissa, static_cast<int>(bits(rng) % 48) - 30), false);
        check_rounding(f, false);
    }
    // Exact ties.
    EXPECT_EQ(f32_to_f16(1.0f + 0x1p-11f), 0x3c00);               // halfway, rounds down to even
    EXPECT_EQ(f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);           // halfway, rounds up to even
    EXPECT_EQ(f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    EXPECT_EQ(f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);
    EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
}
