// Tile constants of the SIMD paths, in one place. All of them depend on the problem only (never
// on the thread count), so task lists and reduction orders are fixed for a given problem.
#pragma once

#include <cstdint>

namespace opennsa::detail::tiles {

inline constexpr int kLanes = 8;  // fp32 lanes of a ymm register
inline constexpr int kMR = 6;     // microkernel rows (broadcast operand)
inline constexpr int kNR = 2;     // microkernel columns, in vectors: 6 x 16 fp32 = 12 accumulators
inline constexpr std::int64_t kRowTile = 64;  // query rows per dK/dV step (S, dP, dS tiles of kRowTile x bs)
inline constexpr std::int64_t kQueryTokens = 8;  // query tokens per forward / dQ task
// dS is stored for a fixed chunk of query tokens so the dQ pass is one matmul (dQ = dS K); the
// chunk holds about this many bytes of fp32 dS.
inline constexpr std::int64_t kDsChunkBytes = std::int64_t{16} << 20;

// Rounds n up to whole vectors: packed rows are padded with zeros to this width.
constexpr std::int64_t padded(std::int64_t n) noexcept { return (n + kLanes - 1) / kLanes * kLanes; }

}  // namespace opennsa::detail::tiles
