// Entry points of the AVX2 + FMA path (x86-64). The passes follow the generic ones (same tasks,
// same ownership of outputs) but compute with register-tiled fp32 microkernels on K/V packed
// once per call. Callers check kernel_path() first; fp64 never comes here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "nsa/problem.hpp"

namespace opennsa::detail::avx2 {

std::size_t forward_workspace(const Problem& p);
void run_forward(const Problem& p, std::span<std::byte> workspace);

std::size_t backward_workspace(const Problem& p);
void run_backward(const Problem& p, std::span<std::byte> workspace);

// Kernel pieces, exposed for unit tests and benchmarks.
// c[M x N] (+)= a[M x K] * b[K x N]; N a multiple of 8, a strided (row stride lda, unit columns),
// b rows ldb apart; accumulate=false overwrites c.
void gemm(std::int64_t M, std::int64_t N, std::int64_t K, const float* a, std::int64_t lda, const float* b,
          std::int64_t ldb, float* c, std::int64_t ldc, bool accumulate);
// Tests only: query tokens per dQ-partials chunk of the backward (0: derived from the problem). Results do
// not depend on it (each accumulator sums its terms in the same order either way).
void set_chunk_tokens_for_testing(std::int64_t tokens) noexcept;
// n values of dtype `dtype` (fp16 / bf16 / fp32) widened to fp32, and n fp32 values rounded into
// it: the vector conversions the passes use on contiguous rows (tails included).
void widen(DType dtype, const void* in, float* out, std::int64_t n);
void narrow(DType dtype, const float* in, void* out, std::int64_t n);
// out[i] = exp(in[i]) for n values (any n), the vector polynomial the passes use.
void exp(const float* in, float* out, std::int64_t n);

}  // namespace opennsa::detail::avx2
