// Which compute path runs: chosen per call from the CPU's features, lowered by the environment
// variable OPENNSA_KERNEL=portable|avx2 (a path the CPU lacks is never chosen).
#pragma once

#include "opennsa/core.hpp"

namespace opennsa::detail {

enum class KernelPath { portable, avx2 };

bool cpu_has_avx2() noexcept;  // AVX2 + FMA + F16C, x86-64 only
bool cpu_has_avx512() noexcept;  // AVX-512 F + VL (and AVX2 + FMA + F16C), with the OS saving zmm state

// Whether the AVX2 passes' matmul tiles run on zmm registers (AVX-512): where the CPU has it,
// unless OPENNSA_KERNEL=avx2 was set when the process first asked. Each output element is the
// same ascending FMA chain at either width, so the bits do not depend on it.
bool use_zmm_gemm() noexcept;
// Tests only: 1 forces zmm (where the CPU has it), 0 forces ymm, -1 restores the default.
void set_zmm_gemm_for_testing(int mode) noexcept;

// AVX512_BF16 (vdpbf16ps) on top of cpu_has_avx512().
bool cpu_has_avx512_bf16() noexcept;
// Whether bf16 problems compute the products of two bf16 inputs (S = Q K^T, dP = dO V^T of the
// selected attention) with the bf16 dot instruction, two exact products per fp32 add: where the
// zmm tiles run and the CPU has AVX512_BF16, unless OPENNSA_BF16_DOT=0 was set when the process
// first asked. The sums are still fp32, in a fixed order, but pairwise, so the bits differ from
// the FMA chain's (within SPEC 7's bf16 tolerance); they do not depend on the thread count.
bool use_bf16_dot() noexcept;
// Tests only: 1 forces the bf16 dot (where the CPU has it), 0 forces the FMA tiles, -1 restores
// the default.
void set_bf16_dot_for_testing(int mode) noexcept;
KernelPath kernel_path() noexcept;
const char* kernel_path_name(KernelPath path) noexcept;

// Whether an operator's AVX2 passes serve a call of this dtype on this path: fp16 / bf16 / fp32
// where the AVX2 path was picked; fp64 always runs the generic passes.
inline bool avx2_serves(DType dtype, KernelPath path) noexcept {
    return dtype != DType::f64 && path == KernelPath::avx2;
}

}  // namespace opennsa::detail
