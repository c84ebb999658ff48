// C callers may pass any int as an enum parameter; in C++ a value outside the enum's range is
// undefined behaviour to load (UBSan reports it). Read such parameters by their bytes instead.
#pragma once

#include <cstring>
#include <type_traits>

namespace opennsa::capi {

template <class E>
long long raw_enum(const E& e) noexcept {
    std::underlying_type_t<E> v;
    std::memcpy(&v, &e, sizeof v);
    return static_cast<long long>(v);
}

// Copies an enum value without loading it as the enum type.
template <class E>
void copy_enum(E& to, const E& from) noexcept {
    std::memcpy(&to, &from, sizeof to);
}

}  // namespace opennsa::capi
