// Portable inner loops of the generic path: dense dot products and row updates in the
// accumulation type, and packing of strided rows into dense accumulation-type rows. Plain C++
// that compilers vectorize; the SIMD paths replace these, not the passes that call them.
#pragma once

#include <cstdint>

#include "nsa/dtype.hpp"
#include "nsa/problem.hpp"

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

// Converts row (i, j, :) of a 3-D view of storage type S into n dense accumulation values.
template <class S>
inline void load_row(const TensorView& t, std::int64_t i, std::int64_t j, Accum<S>* out, std::int64_t n) noexcept {
    const S* src = element<const S>(t, i, j, 0);
    const std::int64_t stride = t.strides[2];
    for (std::int64_t d = 0; d < n; ++d) out[d] = load_acc(src + d * stride);
}

// Rounds n accumulation values (times `factor`) into row (i, j, :) of a 3-D view.
template <class S>
inline void store_row(const TensorView& t, std::int64_t i, std::int64_t j, const Accum<S>* in, Accum<S> factor,
                      std::int64_t n) noexcept {
    S* dst = element<S>(t, i, j, 0);
    const std::int64_t stride = t.strides[2];
    for (std::int64_t d = 0; d < n; ++d) store_acc(dst + d * stride, in[d] * factor);
}

template <class S>
inline void store_zero_row(const TensorView& t, std::int64_t i, std::int64_t j, std::int64_t n) noexcept {
    S* dst = element<S>(t, i, j, 0);
    const std::int64_t stride = t.strides[2];
    for (std::int64_t d = 0; d < n; ++d) store_acc(dst + d * stride, Accum<S>(0));
}

// Writes value to the 8 copies of a softmax statistic row (fp32).
inline void store_stat(const TensorView& t, std::int64_t i, std::int64_t j, float value) noexcept {
    float* dst = element<float>(t, i, j, 0);
    for (int c = 0; c < 8; ++c) dst[c * t.strides[2]] = value;
}

}  // namespace opennsa::detail
