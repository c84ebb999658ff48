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
// The backward keeps per-(row, slot) dQ partials for a fixed chunk of query tokens; the chunk holds
// about this many bytes of them. Larger chunks mean fewer round trips of the dK/dV accumulators
// and fewer barriers (64 MiB measured 9% faster than 16 MiB at T=8192, N1=64, 2 threads).
inline constexpr std::int64_t kDqChunkBytes = std::int64_t{64} << 20;

// Rounds n up to whole vectors: packed rows are padded with zeros to this width.
constexpr std::int64_t padded(std::int64_t n) noexcept { return (n + kLanes - 1) / kLanes * kLanes; }

}  // namespace opennsa::detail::tiles
