// The passes behind the native API, on a validated Problem whose topk values were checked. The
// caller picks the compute path once per call (kernel_path()) and passes it to both functions, so
// the workspace is sized for the path that runs (each path's layout differs).
#pragma once

#include <cstddef>
#include <span>

#include "kernels/dispatch.hpp"
#include "ops/select_attention/problem.hpp"

namespace opennsa::detail::select_attention {

std::size_t forward_workspace(const Problem& p, KernelPath path);
void run_forward(const Problem& p, std::span<std::byte> workspace, KernelPath path);

std::size_t backward_workspace(const Problem& p, KernelPath path);
void run_backward(const Problem& p, std::span<std::byte> workspace, KernelPath path);

}  // namespace opennsa::detail::select_attention
