// Which compute path runs: chosen per call from the CPU's features, lowered by the environment
// variable OPENNSA_KERNEL=portable|avx2 (a path the CPU lacks is never chosen).
#pragma once

namespace opennsa::detail {

enum class KernelPath { portable, avx2 };

bool cpu_has_avx2() noexcept;  // AVX2 + FMA + F16C, x86-64 only
KernelPath kernel_path() noexcept;
const char* kernel_path_name(KernelPath path) noexcept;

}  // namespace opennsa::detail
