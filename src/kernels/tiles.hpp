// Register-tile constants of the SIMD microkernels, in one place. They depend on nothing but the
// instruction set (never on the problem or the thread count), so task lists and reduction orders
// built on them are fixed for a given problem.
#pragma once

#include <cstdint>

namespace opennsa::detail::tiles {

inline constexpr int kLanes = 8;  // fp32 lanes of a ymm register
inline constexpr int kMR = 6;     // microkernel rows (broadcast operand)
inline constexpr int kNR = 2;     // microkernel columns, in vectors: 6 x 16 fp32 = 12 accumulators

// Rounds n up to whole vectors: packed rows are padded with zeros to this width.
constexpr std::int64_t padded(std::int64_t n) noexcept { return (n + kLanes - 1) / kLanes * kLanes; }

}  // namespace opennsa::detail::tiles
