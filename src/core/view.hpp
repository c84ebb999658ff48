// Element access into validated views. Validation (core/validate.hpp) has checked that every
// address of the view fits in int64 and that the pointer is aligned to the element size.
#pragma once

#include <cstdint>

#include "opennsa/core.hpp"

namespace opennsa::detail {

template <class T>
inline T* element(const TensorView& t, std::int64_t i, std::int64_t j, std::int64_t k) noexcept {
    return static_cast<T*>(t.data) + i * t.strides[0] + j * t.strides[1] + k * t.strides[2];
}

template <class T>
inline T* element(const TensorView& t, std::int64_t i, std::int64_t j) noexcept {
    return static_cast<T*>(t.data) + i * t.strides[0] + j * t.strides[1];
}

}  // namespace opennsa::detail
