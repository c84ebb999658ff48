// Entry points of the compress attention infer's AVX2 + FMA pass (x86-64, fp16 / bf16 / fp32),
// built on the register-tiled microkernels of kernels/avx2/core.hpp. Callers check kernel_path()
// first.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "ops/compress_attention_infer/problem.hpp"

namespace opennsa::detail::compress_attention_infer::avx2 {

// Compressed keys per split-K chunk: a task of the first pass. Fixed (never by the thread
// count), a multiple of the zmm microkernel's 32 columns; its fp32 K^T panel (Dk = 192: 192 KiB)
// and V rows stay in L2.
inline constexpr std::int64_t kChunkKeys = 256;

std::size_t forward_workspace(const Problem& p);
void run_forward(const Problem& p, std::span<std::byte> workspace);

}  // namespace opennsa::detail::compress_attention_infer::avx2
