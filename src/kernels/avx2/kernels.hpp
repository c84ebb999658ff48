// The AVX2 + FMA microkernels as plain functions, for unit tests and benchmarks (operators use the
// inline forms in kernels/avx2/core.hpp). x86-64 only; callers check cpu_has_avx2() first.
#pragma once

#include <cstdint>

#include "opennsa/core.hpp"

namespace opennsa::detail::avx2 {

// c[M x N] (+)= a[M x K] * b[K x N]; N a multiple of 8, a strided (row stride lda, unit columns),
// b rows ldb apart; accumulate=false overwrites c.
void gemm(std::int64_t M, std::int64_t N, std::int64_t K, const float* a, std::int64_t lda, const float* b,
          std::int64_t ldb, float* c, std::int64_t ldc, bool accumulate);
// c[M x N] = a[M x K] * b[K x N] on the bf16 dot tiles (callers check cpu_has_avx512_bf16());
// a and b hold bf16 values as fp32 (row strides lda, ldb; N a multiple of 8). dot[i] receives
// row i of a dotted with column 0 of b by bf16_pair_dot, the chain the backward uses for D.
void gemm_bf16(std::int64_t M, std::int64_t N, std::int64_t K, const float* a, std::int64_t lda, const float* b,
               std::int64_t ldb, float* c, std::int64_t ldc, float* dot);
// n values of dtype `dtype` (fp16 / bf16 / fp32) widened to fp32, and n fp32 values rounded into
// it: the vector conversions the passes use on contiguous rows (tails included).
void widen(DType dtype, const void* in, float* out, std::int64_t n);
void narrow(DType dtype, const float* in, void* out, std::int64_t n);
// out[i] = exp(in[i]) for n values (any n), the vector polynomial the passes use.
void exp(const float* in, float* out, std::int64_t n);

}  // namespace opennsa::detail::avx2
