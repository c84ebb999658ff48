// op::fp16_t and op::bfloat16 (aclnn/opdev/fp16_t.h, bfloat16.h): layout, every 16-bit pattern,
// float rounding bit-exact against the library's own conversions (src/core/convert.hpp), double and
// integer rounding (no double rounding) against a nearest-value oracle, and the operators.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <vector>

#include "acl/acl.h"
#include "aclnn/acl_meta.h"
#include "aclnn/opdev/bfloat16.h"
#include "aclnn/opdev/fp16_t.h"
#include "core/convert.hpp"
#include "support.hpp"

namespace {

namespace lib = opennsa::detail;

// What distinguishes the two formats, for tests written once for both.
template <class H>
struct Fmt;
template <>
struct Fmt<op::fp16_t> {
    static constexpr std::uint16_t kMaxFinite = 0x7BFF, kInf = 0x7C00;
    static constexpr long double kOverflowAt = 65520.0L;  // max finite + half an ulp
    static std::uint16_t lib_round(float f) { return lib::f32_to_f16(f); }
    static float lib_widen(std::uint16_t h) { return lib::f16_to_f32(h); }
    static const char* name() { return "fp16_t"; }
};
template <>
struct Fmt<op::bfloat16> {
    static constexpr std::uint16_t kMaxFinite = 0x7F7F, kInf = 0x7F80;
    static constexpr long double kOverflowAt = 0x1.ffp127L;
    static std::uint16_t lib_round(float f) { return lib::f32_to_bf16(f); }
    static float lib_widen(std::uint16_t h) { return lib::bf16_to_f32(h); }
    static const char* name() { return "bfloat16"; }
};

template <class H>
bool is_nan_bits(std::uint16_t b) {
    return (b & Fmt<H>::kInf) == Fmt<H>::kInf && (b & (Fmt<H>::kInf ^ 0x7FFFu)) != 0;
}

template <class H>
long double value_of(std::uint16_t b) {
    return static_cast<long double>(Fmt<H>::lib_widen(b));
}

// Oracle: r is the value of format H nearest to x (ties to the even pattern), with IEEE overflow
// and signed zeros. Independent of the header's rounding code. x is exact in long double for all
// inputs used here (floats, doubles, 64-bit integers, exact sums and products of 16-bit values).
template <class H>
::testing::AssertionResult rounds_correctly(long double x, H r) {
    const std::uint16_t b = r.bits();
    if (std::isnan(x))
        return is_nan_bits<H>(b) ? ::testing::AssertionSuccess()
                                 : ::testing::AssertionFailure() << "NaN became " << std::hex << b;
    if (std::signbit(x) != ((b & 0x8000u) != 0))
        return ::testing::AssertionFailure() << "sign of " << static_cast<double>(x) << " lost (bits " << std::hex
                                             << b << ")";
    const long double ax = std::fabs(x);
    const std::uint16_t mag = static_cast<std::uint16_t>(b & 0x7FFFu);
    if (mag == Fmt<H>::kInf)
        return ax >= Fmt<H>::kOverflowAt ? ::testing::AssertionSuccess()
                                         : ::testing::AssertionFailure() << static_cast<double>(x)
                                                                         << " overflowed to infinity";
    if (mag > Fmt<H>::kInf) return ::testing::AssertionFailure() << "finite value became NaN";
    if (ax >= Fmt<H>::kOverflowAt) return ::testing::AssertionFailure() << static_cast<double>(x) << " must overflow";
    const long double v = value_of<H>(mag);
    const long double up = mag == Fmt<H>::kMaxFinite ? 2 * Fmt<H>::kOverflowAt - v : value_of<H>(mag + 1);
    const long double d = std::fabs(ax - v), d_up = std::fabs(up - ax);
    if (d > d_up) return ::testing::AssertionFailure() << static_cast<double>(x) << " -> " << static_cast<double>(v) << " but the next value up is nearer";
    if (mag > 0) {
        const long double down = value_of<H>(static_cast<std::uint16_t>(mag - 1));
        const long double d_down = std::fabs(ax - down);
        if (d > d_down) return ::testing::AssertionFailure() << static_cast<double>(x) << " -> " << static_cast<double>(v) << " but the next value down is nearer";
        if (d == d_down && (mag & 1) != 0) return ::testing::AssertionFailure() << "tie at " << static_cast<double>(x) << " not to even";
    }
    if (d == d_up && (mag & 1) != 0) return ::testing::AssertionFailure() << "tie at " << static_cast<double>(x) << " not to even";
    return ::testing::AssertionSuccess();
}

float float_of_bits(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

// Floats around every rounding boundary of format H: each finite value, the midpoint to the next
// one (an exact tie, representable in float), and one float ulp either side of both; both signs.
template <class H>
std::vector<float> boundary_floats() {
    std::vector<float> out;
    for (std::uint32_t m = 0; m <= Fmt<H>::kMaxFinite; ++m) {
        const float v = Fmt<H>::lib_widen(static_cast<std::uint16_t>(m));
        // Past the largest finite value the next step is the overflow threshold's twin.
        const long double next = m == Fmt<H>::kMaxFinite ? 2 * Fmt<H>::kOverflowAt - v
                                                         : value_of<H>(static_cast<std::uint16_t>(m + 1));
        const auto mid = static_cast<float>((v + next) / 2);  // exact: one bit more than the format has
        for (float x : {v, mid}) {
            for (float y : {x, std::nextafter(x, 0.0f), std::nextafter(x, std::numeric_limits<float>::infinity())}) {
                out.push_back(y);
                out.push_back(-y);
            }
        }
    }
    return out;
}

template <class H>
void check_float_matches_library(float f) {
    const H h(f);
    const std::uint16_t want = Fmt<H>::lib_round(f);
    if (std::isnan(f)) {
        ASSERT_TRUE(is_nan_bits<H>(h.bits())) << f;
        ASSERT_EQ(h.bits() & 0x8000u, want & 0x8000u) << "NaN sign";
    } else {
        ASSERT_EQ(h.bits(), want) << Fmt<H>::name() << "(" << f << ")";
    }
}

template <class H>
class OpdevTypes : public ::testing::Test {};
using Types = ::testing::Types<op::fp16_t, op::bfloat16>;
TYPED_TEST_SUITE(OpdevTypes, Types);

// --- layout --------------------------------------------------------------------------------------

static_assert(sizeof(op::fp16_t) == 2 && sizeof(op::bfloat16) == 2, "two bytes");
static_assert(std::is_trivially_copyable<op::fp16_t>::value && std::is_trivially_copyable<op::bfloat16>::value,
              "trivially copyable");
static_assert(std::is_same<decltype(op::fp16_t() + op::fp16_t()), op::fp16_t>::value, "fp16 op fp16 is fp16");
static_assert(std::is_same<decltype(op::fp16_t() * 2.0f), float>::value, "fp16 op float is float");
static_assert(std::is_same<decltype(2.0 * op::fp16_t()), double>::value, "double op fp16 is double");
static_assert(std::is_same<decltype(op::bfloat16() - 1), float>::value, "bf16 op int is float");
static_assert(std::is_same<decltype(op::fp16_t() < 1), bool>::value, "comparisons give bool");
static_assert(std::is_same<decltype(op::fp16_t() + op::bfloat16()), float>::value, "fp16 op bf16 is float");

TEST(OpdevLayout, VectorOfFp16IsAnAclFloat16Tensor) {
    // The pattern of CANN's examples: a host vector filled with a value, copied into a tensor.
    const std::vector<op::fp16_t> ones(37, 1.0);
    const std::vector<op::fp16_t> zeros(static_cast<std::int64_t>(5), 0);
    for (op::fp16_t h : ones) ASSERT_EQ(h.val, 0x3C00);
    for (op::fp16_t h : zeros) ASSERT_EQ(h.val, 0x0000);
    EXPECT_EQ(op::fp16_t().val, 0x0000);

    std::mt19937 rng(static_cast<std::uint32_t>(nsa_test::case_seed(1)));
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<op::fp16_t> host(64);
    for (auto& h : host) h = normal(rng);
    void* dev = nullptr;
    ASSERT_EQ(aclrtMalloc(&dev, host.size() * sizeof(op::fp16_t), ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
    ASSERT_EQ(aclrtMemcpy(dev, host.size() * 2, host.data(), host.size() * sizeof(host[0]), ACL_MEMCPY_HOST_TO_DEVICE),
              ACL_SUCCESS);
    const std::int64_t dims[1] = {static_cast<std::int64_t>(host.size())};
    aclTensor* t = aclCreateTensor(dims, 1, ACL_FLOAT16, nullptr, 0, ACL_FORMAT_ND, dims, 1, dev);
    ASSERT_NE(t, nullptr);
    std::vector<aclFloat16> back(host.size());
    ASSERT_EQ(aclrtMemcpy(back.data(), back.size() * 2, dev, back.size() * 2, ACL_MEMCPY_DEVICE_TO_HOST), ACL_SUCCESS);
    for (std::size_t i = 0; i < host.size(); ++i) {
        ASSERT_EQ(back[i], host[i].val);
        ASSERT_EQ(aclFloat16ToFloat(back[i]), static_cast<float>(host[i]));
    }
    EXPECT_EQ(aclDestroyTensor(t), ACLNN_SUCCESS);
    EXPECT_EQ(aclrtFree(dev), ACL_SUCCESS);

    const std::vector<op::bfloat16> bf_ones(9, 1.0);
    for (op::bfloat16 b : bf_ones) ASSERT_EQ(b.value, 0x3F80);
}

// --- every pattern -------------------------------------------------------------------------------

TYPED_TEST(OpdevTypes, EveryPatternWidensExactlyAndRoundTrips) {
    using H = TypeParam;
    for (std::uint32_t b = 0; b < 0x10000; ++b) {
        const auto bits = static_cast<std::uint16_t>(b);
        const H h = H::from_bits(bits);
        const float f = static_cast<float>(h);
        const float want = Fmt<H>::lib_widen(bits);
        ASSERT_EQ(std::memcmp(&f, &want, sizeof f), 0) << std::hex << b;  // same bits, NaNs included
        const double d = static_cast<double>(h);
        if (std::isnan(f)) {
            ASSERT_TRUE(std::isnan(d));
            ASSERT_TRUE(is_nan_bits<H>(H(f).bits())) << std::hex << b;   // NaN stays NaN,
            ASSERT_TRUE(is_nan_bits<H>(H(d).bits())) << std::hex << b;
            ASSERT_EQ(H(f).bits() & 0x8000u, b & 0x8000u);                 // with its sign
            ASSERT_TRUE(is_nan_bits<H>((-h).bits()));
        } else {
            ASSERT_EQ(d, static_cast<double>(f));
            ASSERT_EQ(H(f).bits(), bits) << std::hex << b;  // float round trip
            ASSERT_EQ(H(d).bits(), bits) << std::hex << b;  // double round trip
            ASSERT_EQ(H(static_cast<long double>(d)).bits(), bits) << std::hex << b;
        }
        ASSERT_EQ((-h).bits(), b ^ 0x8000u);  // negation flips the sign bit only
        ASSERT_EQ((+h).bits(), bits);
    }
}

// --- float -> 16 bits: against src/core/convert.hpp ---------------------------------------------------

TYPED_TEST(OpdevTypes, FloatRoundingMatchesTheLibraryAtEveryBoundary) {
    using H = TypeParam;
    for (float f : boundary_floats<H>()) ASSERT_NO_FATAL_FAILURE(check_float_matches_library<H>(f));
    for (float f : {0.0f, -0.0f, std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(),
                    std::numeric_limits<float>::min(), std::numeric_limits<float>::quiet_NaN(),
                    -std::numeric_limits<float>::quiet_NaN(), float_of_bits(0x7F800001u), float_of_bits(0xFFBFFFFFu)})
        ASSERT_NO_FATAL_FAILURE(check_float_matches_library<H>(f));
}

TYPED_TEST(OpdevTypes, FloatRoundingMatchesTheLibraryAcrossAllFloats) {
    using H = TypeParam;
    // Every 4093rd of the 2^32 patterns (NaNs, subnormals and both signs included) ...
    for (std::uint64_t u = 0; u < (std::uint64_t(1) << 32); u += 4093)
        ASSERT_NO_FATAL_FAILURE(check_float_matches_library<H>(float_of_bits(static_cast<std::uint32_t>(u))));
    // ... and random ones.
    std::mt19937_64 rng(nsa_test::case_seed(2));
    for (int i = 0; i < 1 << 20; ++i)
        ASSERT_NO_FATAL_FAILURE(check_float_matches_library<H>(float_of_bits(static_cast<std::uint32_t>(rng()))));
}

// --- double and integers: rounded once, from the exact value ---------------------------------------

TYPED_TEST(OpdevTypes, DoubleIsRoundedDirectlyNotThroughFloat) {
    using H = TypeParam;
    // Just above / below a tie by less than a float ulp: going through float would land exactly on
    // the tie and round to even; the right answer is the nearer neighbour.
    for (std::uint32_t m = 0; m < Fmt<H>::kMaxFinite; ++m) {
        const double v = Fmt<H>::lib_widen(static_cast<std::uint16_t>(m));
        const double next = Fmt<H>::lib_widen(static_cast<std::uint16_t>(m + 1));
        const double mid = v + (next - v) / 2;
        const double above = std::nextafter(mid, 1e300), below = std::nextafter(mid, -1e300);
        ASSERT_EQ(H(above).bits(), m + 1) << above;
        ASSERT_EQ(H(-above).bits(), (m + 1) | 0x8000u) << -above;
        ASSERT_EQ(H(below).bits(), m) << below;
        ASSERT_EQ(H(mid).bits(), (m & 1) ? m + 1 : m) << mid;  // the tie itself goes to even
    }
    // Doubles a float cannot hold: far out of range, subnormal doubles, random ones.
    for (double d : {1e300, -1e300, 1e-300, -1e-300, 4.9e-324, 65519.999999, 65520.0, 0x1.fefffffffffffp127,
                     0x1.ff00000000001p127, std::numeric_limits<double>::infinity(), 0.1, -1.0 / 3})
        ASSERT_TRUE(rounds_correctly(static_cast<long double>(d), H(d))) << d;
    std::mt19937_64 rng(nsa_test::case_seed(3));
    std::uniform_int_distribution<int> exponent(-160, 140);
    std::uniform_real_distribution<double> mantissa(-2.0, 2.0);
    for (int i = 0; i < 1 << 18; ++i) {
        const double d = std::ldexp(mantissa(rng), exponent(rng));
        ASSERT_TRUE(rounds_correctly(static_cast<long double>(d), H(d))) << d;
        std::uint64_t u = rng();
        double any;
        std::memcpy(&any, &u, sizeof any);
        ASSERT_TRUE(rounds_correctly(static_cast<long double>(any), H(any))) << any;
    }
}

TYPED_TEST(OpdevTypes, IntegersAreRoundedFromTheirExactValue) {
    using H = TypeParam;
    static_assert(std::numeric_limits<long double>::digits >= 64, "the oracle needs exact 64-bit integers");
    for (std::int32_t i = -(1 << 20); i <= (1 << 20); ++i)  // exact in float: the library decides
        ASSERT_EQ(H(i).bits(), Fmt<H>::lib_round(static_cast<float>(i))) << i;
    std::mt19937_64 rng(nsa_test::case_seed(4));
    for (int i = 0; i < 1 << 18; ++i) {
        const std::uint64_t u = rng() >> (rng() % 64);
        const auto s = static_cast<std::int64_t>(rng()) >> (rng() % 64);
        ASSERT_TRUE(rounds_correctly(static_cast<long double>(u), H(u))) << u;
        ASSERT_TRUE(rounds_correctly(static_cast<long double>(s), H(s))) << s;
    }
    // Every integer type, at its extremes.
    ASSERT_TRUE(rounds_correctly(static_cast<long double>(std::numeric_limits<std::int64_t>::min()),
                                 H(std::numeric_limits<std::int64_t>::min())));
    ASSERT_TRUE(rounds_correctly(static_cast<long double>(std::numeric_limits<std::uint64_t>::max()),
                                 H(std::numeric_limits<std::uint64_t>::max())));
    ASSERT_TRUE(rounds_correctly(static_cast<long double>(std::numeric_limits<std::int32_t>::min()),
                                 H(std::numeric_limits<std::int32_t>::min())));
    ASSERT_TRUE(rounds_correctly(4294967295.0L, H(std::numeric_limits<std::uint32_t>::max())));
    EXPECT_EQ(static_cast<float>(H(static_cast<std::int8_t>(-128))), -128.0f);
    EXPECT_EQ(static_cast<float>(H(static_cast<std::uint8_t>(255))), 255.0f);
    EXPECT_EQ(static_cast<float>(H(static_cast<std::int16_t>(-32768))), -32768.0f);
    EXPECT_EQ(static_cast<float>(H(true)), 1.0f);
    EXPECT_EQ(static_cast<float>(H('A')), 65.0f);
    EXPECT_EQ(H(0).bits(), 0);  // integer zero is +0
}

TEST(OpdevRounding, KnownIntegerCases) {
    // fp16: the spacing at 2048 is 2, so odd integers there are ties.
    EXPECT_EQ(op::fp16_t(2049).val, 0x6800);   // tie -> 2048 (even)
    EXPECT_EQ(op::fp16_t(2051).val, 0x6802);   // tie -> 2052 (even)
    EXPECT_EQ(op::fp16_t(65519).val, 0x7BFF);  // 65504, the largest finite
    EXPECT_EQ(op::fp16_t(65520).val, 0x7C00);  // overflows to +inf, as IEEE rounding does
    EXPECT_EQ(op::fp16_t(static_cast<std::uint16_t>(65535)).val, 0x7C00);
    EXPECT_EQ(op::fp16_t(-65520).val, 0xFC00);
    EXPECT_EQ(op::fp16_t(std::numeric_limits<std::int64_t>::min()).val, 0xFC00);
    // bfloat16 around 2^60 (0x5D80; spacing 2^53): a double would have rounded 2^60 + 2^52 + 1
    // onto the tie first.
    const std::int64_t p60 = std::int64_t(1) << 60, p52 = std::int64_t(1) << 52;
    EXPECT_EQ(op::bfloat16(p60 + p52 + 1).value, 0x5D81);
    EXPECT_EQ(op::bfloat16(p60 + p52).value, 0x5D80);      // tie -> even
    EXPECT_EQ(op::bfloat16(p60 + 3 * p52).value, 0x5D82);  // tie -> even
    EXPECT_EQ(op::bfloat16(p60 + p52 - 1).value, 0x5D80);
    EXPECT_EQ(op::bfloat16(std::numeric_limits<std::int64_t>::min()).value, 0xDF00);  // -2^63, exact
    EXPECT_EQ(op::bfloat16(std::numeric_limits<std::uint64_t>::max()).value, 0x5F80);  // rounds up to 2^64
}

// --- operators -----------------------------------------------------------------------------------

// Values worth combining: zeros, the smallest and largest, around 1, infinities, NaN; plus random.
template <class H>
std::vector<H> operand_set(std::mt19937_64& rng) {
    std::vector<H> v;
    for (std::uint16_t b : {0x0000, 0x8000, 0x0001, 0x8001, static_cast<int>(Fmt<H>::kMaxFinite),
                            static_cast<int>(Fmt<H>::kMaxFinite) | 0x8000, static_cast<int>(Fmt<H>::kInf),
                            static_cast<int>(Fmt<H>::kInf) | 0x8000, static_cast<int>(Fmt<H>::kInf) | 0x1})
        v.push_back(H::from_bits(b));
    for (double d : {1.0, -1.0, 0.5, 3.0, 1.0 / 3, 1000.0, -7.25}) v.push_back(H(d));
    while (v.size() < 400) {
        const auto b = static_cast<std::uint16_t>(rng());
        if (!is_nan_bits<H>(b)) v.push_back(H::from_bits(b));
    }
    return v;
}

TYPED_TEST(OpdevTypes, ArithmeticIsTheExactResultRoundedOnce) {
    using H = TypeParam;
    std::mt19937_64 rng(nsa_test::case_seed(5));
    const std::vector<H> xs = operand_set<H>(rng);
    for (H a : xs)
        for (H b : xs) {
            const long double x = value_of<H>(a.bits()), y = value_of<H>(b.bits());
            // Sums and products of two 16-bit values are exact in long double (fp16) or rounded to
            // 64 bits, which rounds to the same 16-bit result as the exact value (64 >= 2*11 + 2);
            // likewise for the quotient.
            ASSERT_TRUE(rounds_correctly(x + y, a + b)) << static_cast<float>(a) << " + " << static_cast<float>(b);
            ASSERT_TRUE(rounds_correctly(x - y, a - b)) << static_cast<float>(a) << " - " << static_cast<float>(b);
            ASSERT_TRUE(rounds_correctly(x * y, a * b)) << static_cast<float>(a) << " * " << static_cast<float>(b);
            ASSERT_TRUE(rounds_correctly(x / y, a / b)) << static_cast<float>(a) << " / " << static_cast<float>(b);
            H c = a;
            ASSERT_EQ((c += b).bits(), (a + b).bits());
            c = a;
            ASSERT_EQ((c -= b).bits(), (a - b).bits());
            c = a;
            ASSERT_EQ((c *= b).bits(), (a * b).bits());
            c = a;
            c /= b;
            ASSERT_EQ(c.bits(), (a / b).bits());
            // Comparisons are those of the values: NaN unordered, +0 == -0.
            const float fa = static_cast<float>(a), fb = static_cast<float>(b);
            ASSERT_EQ(a == b, fa == fb);
            ASSERT_EQ(a != b, fa != fb);
            ASSERT_EQ(a < b, fa < fb);
            ASSERT_EQ(a <= b, fa <= fb);
            ASSERT_EQ(a > b, fa > fb);
            ASSERT_EQ(a >= b, fa >= fb);
        }
}

TYPED_TEST(OpdevTypes, MixedOperandsWidenFirst) {
    using H = TypeParam;
    const H a(1.5), b(-2.25);
    EXPECT_EQ(a + 1.0f, 2.5f);
    EXPECT_EQ(1 - a, -0.5f);
    EXPECT_EQ(a * 2.0, 3.0);
    EXPECT_EQ(b / 2, -1.125f);
    EXPECT_TRUE(a == 1.5);
    EXPECT_TRUE(1.5f == a);
    EXPECT_TRUE(b < 0);
    EXPECT_TRUE(0 > b);
    EXPECT_FALSE(a != 1.5);
    H c = a;
    c += 1;  // rounded back into H
    EXPECT_EQ(c.bits(), H(2.5).bits());
    c *= 0.5;
    EXPECT_EQ(c.bits(), H(1.25).bits());
    c -= 2.0f;
    EXPECT_EQ(c.bits(), H(-0.75).bits());
    c /= -3;
    EXPECT_EQ(c.bits(), H(0.25).bits());
    EXPECT_TRUE(H(0.0) == H(-0.0));
    const H nan = H::from_bits(static_cast<std::uint16_t>(Fmt<H>::kInf | 1));
    EXPECT_FALSE(nan == nan);
    EXPECT_TRUE(nan != nan);
    EXPECT_FALSE(nan < 1);
}

TYPED_TEST(OpdevTypes, ConversionsOutOfTheType) {
    using H = TypeParam;
    const H h(-3.75);
    EXPECT_EQ(static_cast<std::int32_t>(h), -3);  // as CANN's examples read topk back
    EXPECT_EQ(static_cast<float>(h), -3.75f);
    const double d = static_cast<double>(h);
    EXPECT_EQ(d, -3.75);
    const float implicit = h;
    EXPECT_EQ(implicit, -3.75f);
    std::ostringstream s;
    s << h << ' ' << -h;
    EXPECT_EQ(s.str(), "-3.75 3.75");
    EXPECT_TRUE(std::isnan(static_cast<float>(H(std::nan("")))));
    EXPECT_TRUE(std::isinf(static_cast<float>(H(1e300))));
}

}  // namespace
