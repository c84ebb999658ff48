// The compression's native API: validate everything, find workspace, run the passes. Nothing is
// written to an output before all checks have passed.
#include "core/workspace.hpp"
#include "ops/compress/passes.hpp"
#include "ops/compress/problem.hpp"

namespace opennsa {
namespace {

namespace cmp = detail::compress;

}  // namespace

std::int64_t compressed_token_count(std::int64_t T, const CompressParams& params) {
    return cmp::make_batches(T, params).total_compressed();
}

std::vector<std::int64_t> compressed_seq_lens(std::int64_t T, const CompressParams& params) {
    const cmp::Batches b = cmp::make_batches(T, params);
    return {b.out.begin() + 1, b.out.end()};
}

std::size_t compress_workspace_bytes(const CompressArgs& args, const CompressParams& params) {
    return cmp::forward_workspace(cmp::validate_forward(args, params), detail::kernel_path());
}

std::size_t compress_backward_workspace_bytes(const CompressGradArgs& args, const CompressParams& params) {
    return cmp::backward_workspace(cmp::validate_backward(args, params), detail::kernel_path());
}

void compress(const CompressArgs& args, const CompressParams& params, std::span<std::byte> workspace) {
    const cmp::Problem p = cmp::validate_forward(args, params);
    if (p.Tc == 0) return;  // no window fits: the output has no rows
    // One path for the whole call: the workspace is sized for the path that runs.
    const detail::KernelPath path = detail::kernel_path();
    const std::size_t need = cmp::forward_workspace(p, path);
    detail::guarded([&] {
        detail::with_workspace(need, workspace, [&](std::span<std::byte> ws) { cmp::run_forward(p, ws, path); });
    });
}

void compress_backward(const CompressGradArgs& args, const CompressParams& params, std::span<std::byte> workspace) {
    const cmp::Problem p = cmp::validate_backward(args, params);
    // Also with Tc = 0: every inputGrad row and every weightGrad element is then 0.
    const detail::KernelPath path = detail::kernel_path();
    const std::size_t need = cmp::backward_workspace(p, path);
    detail::guarded([&] {
        detail::with_workspace(need, workspace, [&](std::span<std::byte> ws) { cmp::run_backward(p, ws, path); });
    });
}

void compress(const CompressArgs& args, const CompressParams& params) { compress(args, params, {}); }
void compress_backward(const CompressGradArgs& args, const CompressParams& params) {
    compress_backward(args, params, {});
}

}  // namespace opennsa
