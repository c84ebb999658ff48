// Overflow-checked size arithmetic. Every size, count and offset that the library derives from
// caller input goes through these: a result that does not fit in int64 is an error naming what
// was being sized, never a wrapped value (docs/spec: sizes are overflow-checked).
#pragma once

#include <cstdint>
#include <initializer_list>

#include "core/error.hpp"

namespace opennsa::detail {

// a * b * ... for non-negative factors; throws invalid_argument naming `what` on overflow.
inline std::int64_t checked_product(std::initializer_list<std::int64_t> factors, const char* what) {
    std::int64_t r = 1;
    for (std::int64_t f : factors)
        if (f < 0 || __builtin_mul_overflow(r, f, &r))
            invalid(what, " does not fit in 64-bit sizes (the problem is too large)");
    return r;
}

inline std::int64_t checked_add(std::int64_t a, std::int64_t b, const char* what) {
    std::int64_t r = 0;
    if (__builtin_add_overflow(a, b, &r)) invalid(what, " does not fit in 64-bit sizes (the problem is too large)");
    return r;
}

// ceil(a / b) for a >= 0, b >= 1, without the overflow of (a + b - 1) / b.
constexpr std::int64_t ceil_div(std::int64_t a, std::int64_t b) noexcept { return a == 0 ? 0 : (a - 1) / b + 1; }

}  // namespace opennsa::detail
