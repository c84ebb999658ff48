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
// The backward keeps per-(row, slot) dQ partials of one kv head for a fixed chunk of query tokens;
// the chunk holds at most kDqChunkBytes of them (80 tokens at G = 16, C = 16, Dk = 192), less
// when half the fp32 dk+dv size is smaller, but not under kDqChunkMinBytes. Larger chunks mean
// fewer round trips of the dK/dV accumulators and fewer barriers; at T = 4096, N1 = 64, 2 threads,
// 8 MiB was ~5% slower than 16 MiB, and 32 / 64 MiB were within noise of it.
inline constexpr std::int64_t kDqChunkBytes = std::int64_t{16} << 20;
inline constexpr std::int64_t kDqChunkMinBytes = std::int64_t{2} << 20;

// Rounds n up to whole vectors: packed rows are padded with zeros to this width.
constexpr std::int64_t padded(std::int64_t n) noexcept { return (n + kLanes - 1) / kLanes * kLanes; }

}  // namespace opennsa::detail::tiles
