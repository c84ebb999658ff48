// Raising the native error type with a one-line message built from parts. Every check in the
// library reports through these, so messages read the same from every API.
#pragma once

#include <sstream>
#include <string>

#include "opennsa/core.hpp"

namespace opennsa::detail {

// Throws Error(code, message); message is one line.
[[noreturn]] void fail(ErrorCode code, const std::string& message);

template <class... Parts>
std::string concat(const Parts&... parts) {
    std::ostringstream s;
    (s << ... << parts);
    return s.str();
}

// ErrorCode::invalid_argument with the concatenated parts.
template <class... Parts>
[[noreturn]] void invalid(const Parts&... parts) {
    fail(ErrorCode::invalid_argument, concat(parts...));
}

// "[2, 3, 4]"
std::string shape_string(const TensorView& t);

}  // namespace opennsa::detail
