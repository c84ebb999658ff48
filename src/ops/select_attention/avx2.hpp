// Entry points of the selected attention's AVX2 + FMA passes (x86-64). The passes follow the
// generic ones (same tasks, same ownership of outputs) but compute with the register-tiled fp32
// microkernels of kernels/avx2. Callers check kernel_path() first; fp64 never comes here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "ops/select_attention/problem.hpp"

namespace opennsa::detail::select_attention::avx2 {

// Task and chunk sizes of these passes. They depend on the problem only (never on the thread
// count), so task lists and reduction orders are fixed for a given problem.
inline constexpr std::int64_t kRowTile = 64;     // query rows per dK/dV step (S, dP, dS tiles of kRowTile x bs)
inline constexpr std::int64_t kQueryTokens = 8;  // query tokens per forward / dQ task
// The backward keeps per-(row, slot) dQ partials of one kv head for a fixed chunk of query tokens;
// the chunk holds at most kDqChunkBytes of them (80 tokens at G = 16, C = 16, Dk = 192), less
// when half the fp32 dk+dv size is smaller, but not under kDqChunkMinBytes. Larger chunks mean
// fewer round trips of the dK/dV accumulators and fewer barriers; at T = 4096, N1 = 64, 2 threads,
// 8 MiB was ~5% slower than 16 MiB, and 32 / 64 MiB were within noise of it.
inline constexpr std::int64_t kDqChunkBytes = std::int64_t{16} << 20;
inline constexpr std::int64_t kDqChunkMinBytes = std::int64_t{2} << 20;

std::size_t forward_workspace(const Problem& p);
void run_forward(const Problem& p, std::span<std::byte> workspace);

std::size_t backward_workspace(const Problem& p);
void run_backward(const Problem& p, std::span<std::byte> workspace);

// Tests only: query tokens per dQ-partials chunk of the backward (0: derived from the problem).
// Results do not depend on it (each accumulator sums its terms in the same order either way).
void set_chunk_tokens_for_testing(std::int64_t tokens) noexcept;

}  // namespace opennsa::detail::select_attention::avx2
