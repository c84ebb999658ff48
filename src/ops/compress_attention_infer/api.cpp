// The compress attention infer's native API: validate everything (the block-table entries
// included), find workspace, run the passes. Nothing is written to an output before all checks
// have passed.
#include "core/workspace.hpp"
#include "ops/compress_attention_infer/passes.hpp"
#include "ops/compress_attention_infer/problem.hpp"

namespace opennsa {
namespace {

namespace cai = detail::compress_attention_infer;

}  // namespace

std::size_t compress_attention_infer_workspace_bytes(const CompressAttentionInferArgs& args,
                                                     const CompressAttentionInferParams& params) {
    return cai::forward_workspace(cai::validate(args, params), detail::kernel_path());
}

void compress_attention_infer(const CompressAttentionInferArgs& args, const CompressAttentionInferParams& params,
                              std::span<std::byte> workspace) {
    const cai::Problem p = cai::validate(args, params);
    cai::check_block_table_entries(p);
    // One path for the whole call; sizing also rejects a problem whose workspace cannot be
    // represented, before anything is written.
    const detail::KernelPath path = detail::kernel_path();
    const std::size_t need = cai::forward_workspace(p, path);
    detail::guarded([&] {
        detail::with_workspace(need, workspace, [&](std::span<std::byte> ws) { cai::run_forward(p, ws, path); });
    });
}

void compress_attention_infer(const CompressAttentionInferArgs& args, const CompressAttentionInferParams& params) {
    compress_attention_infer(args, params, {});
}

}  // namespace opennsa
