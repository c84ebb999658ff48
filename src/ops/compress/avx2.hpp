// Entry points of the compression's AVX2 + FMA passes (x86-64): the tasks of plan.hpp, with the
// per-row work vectorised over D (8 fp32 lanes, 16-bit storage widened on load, one rounding on
// store). Callers check kernel_path() first; fp64 never comes here.
#pragma once

#include <cstddef>
#include <span>

#include "ops/compress/problem.hpp"

namespace opennsa::detail::compress::avx2 {

void run_forward(const Problem& p);
void run_backward(const Problem& p, std::span<std::byte> workspace);

}  // namespace opennsa::detail::compress::avx2
