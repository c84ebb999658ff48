#include "kernels/dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

namespace opennsa::detail {

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
namespace {

// CPUID directly rather than __builtin_cpu_supports: clang 14 does not know "f16c" there.
bool detect_avx2_fma_f16c() noexcept {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(1, 0, &eax, &ebx, &ecx, &edx)) return false;
    const unsigned leaf1 = bit_AVX | bit_FMA | bit_F16C | bit_OSXSAVE;
    if ((ecx & leaf1) != leaf1) return false;
    // The CPU having AVX is not enough: the OS must have enabled the SSE and AVX register state
    // (XCR0 bits 1 and 2; it then saves them on context switches), or AVX instructions fault.
    unsigned xcr0_lo = 0, xcr0_hi = 0;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0u));
    (void)xcr0_hi;
    if ((xcr0_lo & 0x6u) != 0x6u) return false;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    return (ebx & bit_AVX2) != 0;
}

// AVX-512 F and VL, and the OS saving the opmask and zmm state (XCR0 bits 5, 6, 7).
bool detect_avx512() noexcept {
    if (!detect_avx2_fma_f16c()) return false;
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    unsigned xcr0_lo = 0, xcr0_hi = 0;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0u));
    (void)xcr0_hi;
    if ((xcr0_lo & 0xe6u) != 0xe6u) return false;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    const unsigned f_vl = (1u << 16) | (1u << 31);  // AVX512F, AVX512VL
    return (ebx & f_vl) == f_vl;
}

// AVX512_BF16: CPUID leaf 7, subleaf 1, EAX bit 5.
bool detect_avx512_bf16() noexcept {
    if (!detect_avx512()) return false;
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return false;
    return (eax & (1u << 5)) != 0;
}

}  // namespace
#endif

std::atomic<int> zmm_override{-1};
std::atomic<int> bf16_dot_override{-1};

namespace {

bool env_equals(const char* name, const char* value) noexcept {
    const char* env = std::getenv(name);
    return env && std::strcmp(env, value) == 0;
}

// A feature's setting: the default, unless a test forced it on (1, where the CPU has it) or off (0).
bool with_override(const std::atomic<int>& forced, bool by_default, bool cpu_has) noexcept {
    const int mode = forced.load(std::memory_order_relaxed);
    return mode < 0 ? by_default : (mode == 1 && cpu_has);
}

}  // namespace

bool cpu_has_avx512() noexcept {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static const bool has = detect_avx512();
    return has;
#else
    return false;
#endif
}

bool use_zmm_gemm() noexcept {
    static const bool by_default = cpu_has_avx512() && !env_equals("OPENNSA_KERNEL", "avx2");
    return with_override(zmm_override, by_default, cpu_has_avx512());
}

void set_zmm_gemm_for_testing(int mode) noexcept { zmm_override.store(mode, std::memory_order_relaxed); }

bool cpu_has_avx512_bf16() noexcept {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static const bool has = detect_avx512_bf16();
    return has;
#else
    return false;
#endif
}

bool use_bf16_dot() noexcept {
    static const bool by_default = cpu_has_avx512_bf16() && !env_equals("OPENNSA_BF16_DOT", "0");
    return with_override(bf16_dot_override, by_default, cpu_has_avx512_bf16()) && use_zmm_gemm();
}

void set_bf16_dot_for_testing(int mode) noexcept { bf16_dot_override.store(mode, std::memory_order_relaxed); }

bool cpu_has_avx2() noexcept {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static const bool has = detect_avx2_fma_f16c();
    return has;
#else
    return false;
#endif
}

KernelPath kernel_path() noexcept {
    // Read on every call (cheap next to an op) so tests can switch paths inside one process.
    if (env_equals("OPENNSA_KERNEL", "portable")) return KernelPath::portable;
    return cpu_has_avx2() ? KernelPath::avx2 : KernelPath::portable;
}

const char* kernel_path_name(KernelPath path) noexcept {
    return path == KernelPath::avx2 ? "avx2" : "portable";
}

}  // namespace opennsa::detail
