// The passes behind the native API, on a validated Problem whose block-table entries were checked.
// The caller picks the compute path once per call (kernel_path()) and passes it to both
// functions, so the workspace is sized for the path that runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "kernels/dispatch.hpp"
#include "ops/compress_attention_infer/problem.hpp"

namespace opennsa::detail::compress_attention_infer {

std::size_t forward_workspace(const Problem& p, KernelPath path);
void run_forward(const Problem& p, std::span<std::byte> workspace, KernelPath path);

// The generic pass (portable C++, any float dtype), which the AVX2 path also falls back to.
void generic_forward(const Problem& p);

// The computed query tokens (b, s), s < Q_b, batch by batch.
std::vector<std::pair<std::int64_t, std::int64_t>> computed_tokens(const Problem& p);

// BSND rows s >= Q_b, which are not computed: output 0, topk -1.
void write_padding_rows(const Problem& p);

}  // namespace opennsa::detail::compress_attention_infer
