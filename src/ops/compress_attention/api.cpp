// The compress attention's native API: validate everything, find workspace, run the passes.
// Nothing is written to an output before all checks have passed (the operator has no
// data-dependent checks: mask contents are any bytes).
#include "core/workspace.hpp"
#include "ops/compress_attention/passes.hpp"
#include "ops/compress_attention/problem.hpp"

namespace opennsa {
namespace {

namespace ca = detail::compress_attention;

// No query row belongs to a batch (T1 = 0, or only padding rows): nothing to compute, no
// workspace; the forward still writes its padding rows, the backward zero gradients.
bool no_queries(const ca::Problem& p) { return p.batches.valid_queries() == 0; }

}  // namespace

std::size_t compress_attention_workspace_bytes(const CompressAttentionArgs& args, const CompressAttentionParams& params) {
    const ca::Problem p = ca::validate_forward(args, params);
    return no_queries(p) ? 0 : ca::forward_workspace(p, detail::kernel_path());
}

std::size_t compress_attention_backward_workspace_bytes(const CompressAttentionGradArgs& args,
                                                        const CompressAttentionParams& params) {
    const ca::Problem p = ca::validate_backward(args, params);
    return no_queries(p) ? 0 : ca::backward_workspace(p, detail::kernel_path());
}

void compress_attention(const CompressAttentionArgs& args, const CompressAttentionParams& params,
                        std::span<std::byte> workspace) {
    const ca::Problem p = ca::validate_forward(args, params);
    if (no_queries(p)) {
        ca::write_padding_rows(p);
        return;
    }
    // One path for the whole call; sizing also rejects a problem whose workspace cannot be
    // represented, before anything is written.
    const detail::KernelPath path = detail::kernel_path();
    const std::size_t need = ca::forward_workspace(p, path);
    detail::guarded([&] {
        detail::with_workspace(need, workspace, [&](std::span<std::byte> ws) { ca::run_forward(p, ws, path); });
    });
}

void compress_attention_backward(const CompressAttentionGradArgs& args, const CompressAttentionParams& params,
                                 std::span<std::byte> workspace) {
    const ca::Problem p = ca::validate_backward(args, params);
    if (no_queries(p)) {
        for (const TensorView* t : {&p.dq, &p.dk, &p.dv}) detail::zero_view(*t);
        return;
    }
    const detail::KernelPath path = detail::kernel_path();
    const std::size_t need = ca::backward_workspace(p, path);
    detail::guarded([&] {
        detail::with_workspace(need, workspace, [&](std::span<std::byte> ws) { ca::run_backward(p, ws, path); });
    });
}

void compress_attention(const CompressAttentionArgs& args, const CompressAttentionParams& params) {
    compress_attention(args, params, {});
}

void compress_attention_backward(const CompressAttentionGradArgs& args, const CompressAttentionParams& params) {
    compress_attention_backward(args, params, {});
}

}  // namespace opennsa
