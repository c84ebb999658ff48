// The pass behind the native API, on a validated Problem whose values were checked. The caller
// picks the compute path once per call (kernel_path()).
#pragma once

#include "kernels/dispatch.hpp"
#include "ops/compress_with_cache/problem.hpp"

namespace opennsa::detail::compress_with_cache {

void run(const Problem& p, KernelPath path);

}  // namespace opennsa::detail::compress_with_cache
