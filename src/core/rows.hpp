// Row access of 3-D views [i, j, :] in the accumulation type: the scalar load / round-once store
// every path shares (any stride along the row; the SIMD paths have vector forms for contiguous
// rows that agree with these bit for bit).
#pragma once

#include <cstdint>

#include "core/convert.hpp"
#include "core/view.hpp"

namespace opennsa::detail {

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

// Writes value to the 8 copies of a softmax statistic row (fp32, [.., .., 8]).
inline void store_stat(const TensorView& t, std::int64_t i, std::int64_t j, float value) noexcept {
    float* dst = element<float>(t, i, j, 0);
    for (int c = 0; c < 8; ++c) dst[c * t.strides[2]] = value;
}

}  // namespace opennsa::detail
