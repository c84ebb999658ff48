// The passes behind the native API, on a validated Problem. The caller picks the compute path
// once per call (kernel_path()) and passes it to both functions, so the workspace is sized for the
// path that runs.
#pragma once

#include <cstddef>
#include <span>

#include "kernels/dispatch.hpp"
#include "ops/compress_attention/problem.hpp"

namespace opennsa::detail::compress_attention {

std::size_t forward_workspace(const Problem& p, KernelPath path);
void run_forward(const Problem& p, std::span<std::byte> workspace, KernelPath path);

std::size_t backward_workspace(const Problem& p, KernelPath path);
void run_backward(const Problem& p, std::span<std::byte> workspace, KernelPath path);

// The generic passes (portable C++, any float dtype), which the AVX2 path also falls back to.
std::size_t generic_forward_workspace(const Problem& p);
void generic_forward(const Problem& p, std::span<std::byte> workspace);
std::size_t generic_backward_workspace(const Problem& p);
void generic_backward(const Problem& p, std::span<std::byte> workspace);

// Query tokens of one batch that one task computes: [t0, t1) with t0 < t1, all in batch `batch`.
struct QueryTile {
    std::int64_t batch, t0, t1;
};
// Every batch's tokens cut into tiles of `tokens` (the last tile of a batch may be shorter), in
// batch order. Fixed by the problem and `tokens` alone.
std::vector<QueryTile> query_tiles(const Problem& p, std::int64_t tokens);

// Writes the outputs of padding query rows (past the last batch): out 0, statistics 0 (their
// flat rows are the same in both layouts), topk -1.
void write_padding_rows(const Problem& p);

}  // namespace opennsa::detail::compress_attention
