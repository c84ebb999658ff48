// The passes behind the native API, on a validated Problem whose topk values were checked.
#pragma once

#include <cstddef>
#include <span>

#include "nsa/problem.hpp"

namespace opennsa::detail {

std::size_t forward_workspace(const Problem& p);
void run_forward(const Problem& p, std::span<std::byte> workspace);

std::size_t backward_workspace(const Problem& p);
void run_backward(const Problem& p, std::span<std::byte> workspace);

}  // namespace opennsa::detail
