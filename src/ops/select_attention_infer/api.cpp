// The decoding selected attention's native API: validate everything, check the top-k indices and
// the block table, find workspace, run the pass. Nothing is written to the output before all
// checks have passed.
#include "core/workspace.hpp"
#include "ops/select_attention_infer/passes.hpp"
#include "ops/select_attention_infer/problem.hpp"

namespace opennsa {
namespace {

namespace sai = detail::select_attention_infer;

// No computed row (no batch): nothing to compute, no workspace (the scratch grows with head dims,
// which a broadcast view may make enormous).
bool nothing_to_compute(const sai::Problem& p) { return p.tokens() == 0; }

}  // namespace

std::size_t select_attention_infer_workspace_bytes(const SelectAttentionInferArgs& args,
                                                   const SelectAttentionInferParams& params) {
    const sai::Problem p = sai::validate(args, params);
    return nothing_to_compute(p) ? 0 : sai::forward_workspace(p, detail::kernel_path());
}

void select_attention_infer(const SelectAttentionInferArgs& args, const SelectAttentionInferParams& params,
                            std::span<std::byte> workspace) {
    const sai::Problem p = sai::validate(args, params);
    sai::check_contents(p);
    if (nothing_to_compute(p)) {
        detail::zero_view(p.out_view);
        return;
    }
    // One path for the whole call; sizing also rejects a problem whose workspace cannot be
    // represented, before anything is written.
    const detail::KernelPath path = detail::kernel_path();
    const std::size_t need = sai::forward_workspace(p, path);
    detail::guarded([&] {
        detail::with_workspace(need, workspace, [&](std::span<std::byte> ws) {
            sai::zero_padding_rows(p);
            sai::run_forward(p, ws, path);
        });
    });
}

void select_attention_infer(const SelectAttentionInferArgs& args, const SelectAttentionInferParams& params) {
    select_attention_infer(args, params, {});
}

}  // namespace opennsa
