/* OpenNSA: what op::fp16_t (aclnn/opdev/fp16_t.h) and op::bfloat16 (aclnn/opdev/bfloat16.h) share:
 * rounding a float, double or integer to a 16-bit binary format (round to nearest, ties to even;
 * NaN stays NaN; overflow to infinity as IEEE rounding does), widening back, and the operators.
 * Not a CANN header: include fp16_t.h or bfloat16.h. C++11 or later; C++ only. */
#ifndef OPENNSA_ACLNN_OPDEV_OPENNSA_FLOAT16_H_
#define OPENNSA_ACLNN_OPDEV_OPENNSA_FLOAT16_H_

#ifndef __cplusplus
#error "aclnn/opdev/fp16_t.h and aclnn/opdev/bfloat16.h are C++ only (op::fp16_t and op::bfloat16 are C++ types); in C use aclFloat16 with aclFloatToFloat16 / aclFloat16ToFloat from acl/acl_base.h"
#endif

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace op {
namespace opennsa_detail {

// Position of the highest set bit of x (x != 0).
inline int highest_bit(std::uint64_t x) {
    int n = 0;
    for (int step = 32; step > 0; step /= 2)
        if ((x >> step) != 0) {
            x >>= step;
            n += step;
        }
    return n;
}

// The 16-bit pattern nearest to (-1)^negative * significand * 2^exponent (an exact value), in the
// format with ExpBits exponent and ManBits fraction bits; ties go to the even pattern. Every
// conversion goes through here, from the exact input, so nothing is rounded twice.
template <int ExpBits, int ManBits>
inline std::uint16_t round_to_16(bool negative, std::uint64_t significand, int exponent) {
    static_assert(1 + ExpBits + ManBits == 16, "a 16-bit format");
    const std::uint32_t sign = negative ? 0x8000u : 0u;
    const std::uint32_t inf = ((1u << ExpBits) - 1u) << ManBits;
    const int bias = (1 << (ExpBits - 1)) - 1;
    const int min_normal = 1 - bias;
    if (significand == 0) return static_cast<std::uint16_t>(sign);
    const int lead = highest_bit(significand) + exponent;  // exponent of the leading bit
    if (lead > bias) return static_cast<std::uint16_t>(sign | inf);  // >= 2 * 2^bias: rounds to infinity
    const int scale = lead < min_normal ? min_normal : lead;       // subnormals share the smallest scale
    const int shift = scale - ManBits - exponent;                  // input bits below the result's last bit
    std::uint64_t units;                                           // the result in units of its last bit
    if (shift <= 0) {
        units = significand << -shift;  // exact; fewer than ManBits + 2 bits
    } else if (shift > 64) {
        units = 0;  // below half a unit
    } else if (shift == 64) {
        units = significand > (std::uint64_t(1) << 63) ? 1 : 0;  // exactly half rounds to even (0)
    } else {
        const std::uint64_t rest = significand & ((std::uint64_t(1) << shift) - 1);
        const std::uint64_t half = std::uint64_t(1) << (shift - 1);
        units = significand >> shift;
        if (rest > half || (rest == half && (units & 1) != 0)) ++units;
    }
    // units carries the implicit leading bit of a normal result, so adding it to the exponent
    // field minus one lands right, including a round-up into the next binade or to infinity.
    const std::uint32_t bits =
        (static_cast<std::uint32_t>(scale + bias - 1) << ManBits) + static_cast<std::uint32_t>(units);
    return static_cast<std::uint16_t>(sign | (bits < inf ? bits : inf));
}

// A quiet NaN that keeps the sign and as much of the payload as fits.
template <int ExpBits, int ManBits>
inline std::uint16_t quiet_nan_16(bool negative, std::uint64_t top_payload_bits) {
    const std::uint32_t inf = ((1u << ExpBits) - 1u) << ManBits;
    const std::uint32_t quiet = 1u << (ManBits - 1);
    return static_cast<std::uint16_t>((negative ? 0x8000u : 0u) | inf | quiet |
                                      static_cast<std::uint32_t>(top_payload_bits));
}

template <int ExpBits, int ManBits>
inline std::uint16_t from_float(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    const bool negative = (u >> 31) != 0;
    const std::uint32_t e = (u >> 23) & 0xFFu;
    const std::uint32_t fraction = u & 0x7FFFFFu;
    if (e == 0xFFu) {
        if (fraction == 0) return static_cast<std::uint16_t>((negative ? 0x8000u : 0u) | (((1u << ExpBits) - 1u) << ManBits));
        return quiet_nan_16<ExpBits, ManBits>(negative, fraction >> (23 - ManBits));
    }
    if (e == 0) return round_to_16<ExpBits, ManBits>(negative, fraction, -149);
    return round_to_16<ExpBits, ManBits>(negative, fraction | 0x800000u, static_cast<int>(e) - 150);
}

template <int ExpBits, int ManBits>
inline std::uint16_t from_double(double d) {
    std::uint64_t u;
    std::memcpy(&u, &d, sizeof u);
    const bool negative = (u >> 63) != 0;
    const std::uint64_t e = (u >> 52) & 0x7FFu;
    const std::uint64_t fraction = u & ((std::uint64_t(1) << 52) - 1);
    if (e == 0x7FFu) {
        if (fraction == 0) return static_cast<std::uint16_t>((negative ? 0x8000u : 0u) | (((1u << ExpBits) - 1u) << ManBits));
        return quiet_nan_16<ExpBits, ManBits>(negative, fraction >> (52 - ManBits));
    }
    if (e == 0) return round_to_16<ExpBits, ManBits>(negative, fraction, -1074);
    return round_to_16<ExpBits, ManBits>(negative, fraction | (std::uint64_t(1) << 52), static_cast<int>(e) - 1075);
}

// Integers are rounded from their exact value (not through double, which would round first).
template <class I>
inline bool is_negative(I v, std::true_type /*signed*/) { return v < 0; }
template <class I>
inline bool is_negative(I, std::false_type /*unsigned*/) { return false; }
template <class I>
inline std::uint64_t magnitude(I v, std::true_type /*signed*/) {
    return v < 0 ? std::uint64_t(0) - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v);
}
template <class I>
inline std::uint64_t magnitude(I v, std::false_type /*unsigned*/) { return static_cast<std::uint64_t>(v); }

template <int ExpBits, int ManBits, class I>
inline std::uint16_t from_integer(I v) {
    typedef std::integral_constant<bool, std::is_signed<I>::value> is_signed;
    return round_to_16<ExpBits, ManBits>(is_negative(v, is_signed()), magnitude(v, is_signed()), 0);
}

inline float float_from_bits(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

// binary16 -> float, exact.
inline float fp16_bits_to_float(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t e = (h >> 10) & 0x1Fu;
    std::uint32_t fraction = h & 0x3FFu;
    if (e == 0x1Fu) return float_from_bits(sign | 0x7F800000u | (fraction << 13));  // inf, NaN
    if (e != 0) return float_from_bits(sign | ((e + 112u) << 23) | (fraction << 13));
    if (fraction == 0) return float_from_bits(sign);
    std::uint32_t float_exponent = 113;  // a subnormal: normalise the fraction
    while ((fraction & 0x400u) == 0) {
        fraction <<= 1;
        --float_exponent;
    }
    return float_from_bits(sign | (float_exponent << 23) | ((fraction & 0x3FFu) << 13));
}

// bfloat16 -> float, exact: bfloat16 is the upper half of a float.
inline float bf16_bits_to_float(std::uint16_t h) { return float_from_bits(static_cast<std::uint32_t>(h) << 16); }

// Marks the 16-bit value types (op::fp16_t, op::bfloat16) for the operators below.
template <class T>
struct is_float16_type : std::false_type {};

template <class H, class R>
struct if_float16 : std::enable_if<is_float16_type<H>::value, R> {};

// For H op T with T arithmetic: the result type of float op T, as if H were a narrower float.
template <class H, class T>
struct mixed_result
    : std::enable_if<is_float16_type<H>::value && std::is_arithmetic<T>::value, decltype(0.0f + T())> {};

template <class H, class T>
struct mixed_bool : std::enable_if<is_float16_type<H>::value && std::is_arithmetic<T>::value, bool> {};

}  // namespace opennsa_detail

// Operators of op::fp16_t and op::bfloat16, found by argument-dependent lookup. Between two 16-bit
// values the result is the exact result rounded once to nearest even: it is computed in double,
// whose 53 bits (at least 2p + 2 for both formats, with every 16-bit result in double's normal
// range) make the second rounding to 16 bits give what rounding the exact value would. With an
// arithmetic operand the 16-bit value is widened to float first and the result has the C++ type of
// float op operand (h + 1.0f is a float, h * 2.0 a double); compound assignment rounds that back.
#define OPENNSA_FLOAT16_ARITHMETIC(op_sym, assign_sym)                                                          \
    template <class H>                                                                                          \
    inline typename opennsa_detail::if_float16<H, H>::type operator op_sym(H a, H b) {                          \
        return H(static_cast<double>(a) op_sym static_cast<double>(b));                                         \
    }                                                                                                           \
    template <class H, class T>                                                                                 \
    inline typename opennsa_detail::mixed_result<H, T>::type operator op_sym(H a, T b) {                        \
        typedef typename opennsa_detail::mixed_result<H, T>::type R;                                            \
        return static_cast<R>(static_cast<float>(a)) op_sym static_cast<R>(b);                                  \
    }                                                                                                           \
    template <class H, class T>                                                                                 \
    inline typename opennsa_detail::mixed_result<H, T>::type operator op_sym(T a, H b) {                        \
        typedef typename opennsa_detail::mixed_result<H, T>::type R;                                            \
        return static_cast<R>(a) op_sym static_cast<R>(static_cast<float>(b));                                  \
    }                                                                                                           \
    template <class H>                                                                                          \
    inline typename opennsa_detail::if_float16<H, H&>::type operator assign_sym(H& a, H b) {                    \
        return a = a op_sym b;                                                                                  \
    }                                                                                                           \
    template <class H, class T>                                                                                 \
    inline typename opennsa_detail::if_float16<H, typename std::enable_if<std::is_arithmetic<T>::value, H&>::type>::type \
    operator assign_sym(H& a, T b) {                                                                            \
        return a = H(a op_sym b);                                                                               \
    }

OPENNSA_FLOAT16_ARITHMETIC(+, +=)
OPENNSA_FLOAT16_ARITHMETIC(-, -=)
OPENNSA_FLOAT16_ARITHMETIC(*, *=)
OPENNSA_FLOAT16_ARITHMETIC(/, /=)
#undef OPENNSA_FLOAT16_ARITHMETIC

// Comparisons as the widened floats compare: NaN is unordered, +0 == -0.
#define OPENNSA_FLOAT16_COMPARISON(op_sym)                                                                      \
    template <class H>                                                                                          \
    inline typename opennsa_detail::if_float16<H, bool>::type operator op_sym(H a, H b) {                       \
        return static_cast<float>(a) op_sym static_cast<float>(b);                                              \
    }                                                                                                           \
    template <class H, class T>                                                                                 \
    inline typename opennsa_detail::mixed_bool<H, T>::type operator op_sym(H a, T b) {                          \
        typedef typename opennsa_detail::mixed_result<H, T>::type R;                                            \
        return static_cast<R>(static_cast<float>(a)) op_sym static_cast<R>(b);                                  \
    }                                                                                                           \
    template <class H, class T>                                                                                 \
    inline typename opennsa_detail::mixed_bool<H, T>::type operator op_sym(T a, H b) {                          \
        typedef typename opennsa_detail::mixed_result<H, T>::type R;                                            \
        return static_cast<R>(a) op_sym static_cast<R>(static_cast<float>(b));                                  \
    }

OPENNSA_FLOAT16_COMPARISON(==)
OPENNSA_FLOAT16_COMPARISON(!=)
OPENNSA_FLOAT16_COMPARISON(<)
OPENNSA_FLOAT16_COMPARISON(<=)
OPENNSA_FLOAT16_COMPARISON(>)
OPENNSA_FLOAT16_COMPARISON(>=)
#undef OPENNSA_FLOAT16_COMPARISON

// Negation flips the sign bit (exact, also for zeros and NaN).
template <class H>
inline typename opennsa_detail::if_float16<H, H>::type operator-(H a) {
    return H::from_bits(static_cast<std::uint16_t>(a.bits() ^ 0x8000u));
}
template <class H>
inline typename opennsa_detail::if_float16<H, H>::type operator+(H a) {
    return a;
}

}  // namespace op

#endif /* OPENNSA_ACLNN_OPDEV_OPENNSA_FLOAT16_H_ */
