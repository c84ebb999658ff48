// Portable inner loops of the generic paths: dense dot products and row updates in the
// accumulation type. Plain C++ that compilers vectorize; the SIMD paths replace these, not the
// passes that call them.
#pragma once

#include <cstdint>

#include "core/rows.hpp"

namespace opennsa::detail {

template <class A>
inline A dot(const A* a, const A* b, std::int64_t n) noexcept {
    // Eight independent partial sums in a fixed order: vectorizable, and the same result on every
    // run and thread.
    A part[8] = {};
    std::int64_t d = 0;
    for (; d + 8 <= n; d += 8)
        for (int l = 0; l < 8; ++l) part[l] += a[d + l] * b[d + l];
    for (int l = 0; d < n; ++d, ++l) part[l] += a[d] * b[d];
    return ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
}

// y += a * x
template <class A>
inline void axpy(A a, const A* x, A* y, std::int64_t n) noexcept {
    for (std::int64_t d = 0; d < n; ++d) y[d] += a * x[d];
}

// max that propagates NaN (std::max drops a NaN in its second argument): a row with a NaN score
// has a NaN max, on every path (docs/spec: NaN is never hidden).
template <class A>
inline A max_nan(A a, A b) noexcept {
    return (a != a || b != b) ? a + b : (a < b ? b : a);
}

}  // namespace opennsa::detail
