#include "kernels/dispatch.hpp"

#include <cstdlib>
#include <cstring>

namespace opennsa::detail {

bool cpu_has_avx2() noexcept {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                            __builtin_cpu_supports("f16c");
    return has;
#else
    return false;
#endif
}

KernelPath kernel_path() noexcept {
    // Read on every call (cheap next to an op) so tests can switch paths inside one process.
    const char* env = std::getenv("OPENNSA_KERNEL");
    if (env && std::strcmp(env, "portable") == 0) return KernelPath::portable;
    return cpu_has_avx2() ? KernelPath::avx2 : KernelPath::portable;
}

const char* kernel_path_name(KernelPath path) noexcept {
    return path == KernelPath::avx2 ? "avx2" : "portable";
}

}  // namespace opennsa::detail
