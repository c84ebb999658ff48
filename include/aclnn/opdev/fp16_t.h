/* OpenNSA: op::fp16_t, CANN's host-side IEEE binary16 (half precision) value type, as CANN's own
 * example programs use it: `std::vector<op::fp16_t> q(n, 1.0);` filled on the host, copied into an
 * ACL_FLOAT16 tensor, results read back with static_cast<float>(h). Header-only; C++11 or later; C++
 * only (including it from C is an #error: C code uses aclFloat16 and aclFloatToFloat16).
 *
 * - Exactly 2 bytes, trivially copyable: a std::vector<op::fp16_t> is an ACL_FLOAT16 buffer.
 * - Implicit construction from float, double, long double and every integer type, rounded once to
 *   nearest even from the exact value (long double goes through double first); NaN stays NaN;
 *   |x| >= 65520 becomes infinity. The default value is +0.
 * - Implicit conversion to float (exact), explicit to double (exact); so static_cast<int32_t>(h),
 *   std::cout << h and float f = h work.
 * - + - * / and their compound forms, unary minus (flips the sign bit), == != < <= > >=: between two
 *   fp16_t the result is rounded once; with an arithmetic operand the fp16_t is widened to float
 *   and the result has the type of float op operand (h * 2.0 is a double).
 * - val is the bit pattern; from_bits() / bits() build and read it. */
#ifndef OPENNSA_ACLNN_OPDEV_FP16_T_H_
#define OPENNSA_ACLNN_OPDEV_FP16_T_H_

#include "opennsa_float16.h"

namespace op {

struct fp16_t {
    std::uint16_t val;  // IEEE binary16: 1 sign, 5 exponent, 10 fraction bits

    fp16_t() : val(0) {}
    fp16_t(float v) : val(opennsa_detail::from_float<5, 10>(v)) {}
    fp16_t(double v) : val(opennsa_detail::from_double<5, 10>(v)) {}
    fp16_t(long double v) : val(opennsa_detail::from_double<5, 10>(static_cast<double>(v))) {}
    template <class I, typename std::enable_if<std::is_integral<I>::value, int>::type = 0>
    fp16_t(I v) : val(opennsa_detail::from_integer<5, 10>(v)) {}

    static fp16_t from_bits(std::uint16_t bits) {
        fp16_t h;
        h.val = bits;
        return h;
    }
    std::uint16_t bits() const { return val; }

    operator float() const { return opennsa_detail::fp16_bits_to_float(val); }
    explicit operator double() const { return static_cast<double>(opennsa_detail::fp16_bits_to_float(val)); }
};

namespace opennsa_detail {
template <>
struct is_float16_type<fp16_t> : std::true_type {};
}  // namespace opennsa_detail

static_assert(sizeof(fp16_t) == 2, "op::fp16_t must be exactly 2 bytes (an ACL_FLOAT16 element)");
static_assert(std::is_trivially_copyable<fp16_t>::value, "op::fp16_t must be trivially copyable");
static_assert(std::is_standard_layout<fp16_t>::value, "op::fp16_t must be standard layout");

}  // namespace op

#endif /* OPENNSA_ACLNN_OPDEV_FP16_T_H_ */
