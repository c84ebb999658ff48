// Entry point of the decoding compression's AVX2 + FMA pass (x86-64): the tasks of plan.hpp, the
// window sum vectorised over D (8 fp32 lanes, 16-bit storage widened on load, one rounding on
// store). Callers check kernel_path() first; fp64 never comes here.
#pragma once

#include "ops/compress_with_cache/problem.hpp"

namespace opennsa::detail::compress_with_cache::avx2 {

void run(const Problem& p);

}  // namespace opennsa::detail::compress_with_cache::avx2
