/* OpenNSA: op::bfloat16, CANN's host-side bfloat16 value type (the upper 16 bits of an IEEE float:
 * 1 sign, 8 exponent, 7 fraction bits), for ACL_BF16 tensors filled on the host. Header-only; C++11
 * or later; C++ only (including it from C is an #error).
 *
 * Same interface as op::fp16_t (aclnn/opdev/fp16_t.h): exactly 2 bytes and trivially copyable;
 * implicit construction from float, double, long double and integers, rounded once to nearest even
 * (NaN stays NaN, overflow to infinity); implicit conversion to float, explicit to double; + - * /,
 * compound forms, unary minus and comparisons. value is the bit pattern; from_bits() / bits(). */
#ifndef OPENNSA_ACLNN_OPDEV_BFLOAT16_H_
#define OPENNSA_ACLNN_OPDEV_BFLOAT16_H_

#include "opennsa_float16.h"

namespace op {

struct bfloat16 {
    std::uint16_t value;  // the upper half of an IEEE binary32

    bfloat16() : value(0) {}
    bfloat16(float v) : value(opennsa_detail::from_float<8, 7>(v)) {}
    bfloat16(double v) : value(opennsa_detail::from_double<8, 7>(v)) {}
    bfloat16(long double v) : value(opennsa_detail::from_double<8, 7>(static_cast<double>(v))) {}
    template <class I, typename std::enable_if<std::is_integral<I>::value, int>::type = 0>
    bfloat16(I v) : value(opennsa_detail::from_integer<8, 7>(v)) {}

    static bfloat16 from_bits(std::uint16_t bits) {
        bfloat16 b;
        b.value = bits;
        return b;
    }
    std::uint16_t bits() const { return value; }

    operator float() const { return opennsa_detail::bf16_bits_to_float(value); }
    explicit operator double() const { return static_cast<double>(opennsa_detail::bf16_bits_to_float(value)); }
};

namespace opennsa_detail {
template <>
struct is_float16_type<bfloat16> : std::true_type {};
}  // namespace opennsa_detail

static_assert(sizeof(bfloat16) == 2, "op::bfloat16 must be exactly 2 bytes (an ACL_BF16 element)");
static_assert(std::is_trivially_copyable<bfloat16>::value, "op::bfloat16 must be trivially copyable");
static_assert(std::is_standard_layout<bfloat16>::value, "op::bfloat16 must be standard layout");

}  // namespace op

#endif /* OPENNSA_ACLNN_OPDEV_BFLOAT16_H_ */
