// The pass behind the native API, on a validated Problem whose contents were checked. The caller
// picks the compute path once per call (kernel_path()) and passes it to both functions, so the
// workspace is sized for the path that runs.
#pragma once

#include <cstddef>
#include <span>

#include "kernels/dispatch.hpp"
#include "ops/select_attention_infer/problem.hpp"

namespace opennsa::detail::select_attention_infer {

std::size_t forward_workspace(const Problem& p, KernelPath path);
void run_forward(const Problem& p, std::span<std::byte> workspace, KernelPath path);

// Zeros in the output rows s >= Q_b of BSND / BSH (rows that are not computed).
void zero_padding_rows(const Problem& p);

}  // namespace opennsa::detail::select_attention_infer
