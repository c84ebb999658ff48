// Entry points of the compress attention's AVX2 + FMA passes (x86-64, fp16 / bf16 / fp32), built
// on the register-tiled microkernels of kernels/avx2/core.hpp. Callers check kernel_path() first.
//
// Dense matmuls over a tile of rows multiply masked entries by exact zeros, which is exact only
// for finite operands (0 * inf = NaN). So that an input a row does not see never reaches it
// (docs/spec: masked tokens do not affect a row), the passes first check the operands a masked
// entry meets -- value for the forward, query, key and out_grad for the backward -- and hand a
// problem with a non-finite one to the generic passes. The workspace is sized for both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "ops/compress_attention/problem.hpp"

namespace opennsa::detail::compress_attention::avx2 {

// Task sizes, fixed by the problem alone (never by the thread count).
inline constexpr std::int64_t kRowTarget = 96;                     // rows (token x head) per forward / dQ tile (16 microkernel tiles)
inline constexpr std::int64_t kTileScoreBytes = std::int64_t{1} << 20;  // bound on a forward tile's fp32 scores
inline constexpr std::int64_t kKeyTile = 48;                       // compressed keys per dK/dV task (8 microkernel tiles)
inline constexpr std::int64_t kRowBlock = 256;                     // rows per dK/dV matmul (its A and B stay in L1 / L2)
// The backward keeps the probabilities and dS of a chunk of query tiles (all kv heads), two chunks
// at a time; a chunk holds at most this much of them, or one tile when a tile alone is larger.
inline constexpr std::int64_t kChunkBytes = std::int64_t{8} << 20;

std::size_t forward_workspace(const Problem& p);
void run_forward(const Problem& p, std::span<std::byte> workspace);

std::size_t backward_workspace(const Problem& p);
void run_backward(const Problem& p, std::span<std::byte> workspace);

// Tests only: the chunk budget of the backward in bytes (0: kChunkBytes). Results do not depend
// on it (each accumulator sums its terms in the same order either way).
void set_chunk_bytes_for_testing(std::int64_t bytes) noexcept;

}  // namespace opennsa::detail::compress_attention::avx2
