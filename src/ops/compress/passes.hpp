// The passes behind the native API, on a validated Problem. The caller picks the compute path
// once per call (kernel_path()) and passes it to both functions, so the workspace is sized for
// the path that runs.
#pragma once

#include <cstddef>
#include <span>

#include "kernels/dispatch.hpp"
#include "ops/compress/problem.hpp"

namespace opennsa::detail::compress {

// The forward needs no workspace: 0.
std::size_t forward_workspace(const Problem& p, KernelPath path);
void run_forward(const Problem& p, std::span<std::byte> workspace, KernelPath path);

// The backward's workspace: the weight-gradient partials of its tasks (plan.hpp).
std::size_t backward_workspace(const Problem& p, KernelPath path);
void run_backward(const Problem& p, std::span<std::byte> workspace, KernelPath path);

}  // namespace opennsa::detail::compress
