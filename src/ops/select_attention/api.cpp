// The selected attention's native API: validate everything, check the topk values, find
// workspace, run the passes. Nothing is written to an output before all checks have passed.
#include "core/workspace.hpp"
#include "ops/select_attention/passes.hpp"
#include "ops/select_attention/problem.hpp"

namespace opennsa {
namespace {

namespace sel = detail::select_attention;

// No query row belongs to a batch (T1 = 0, or only padding rows): there is nothing to compute,
// every output is zero, and no workspace is needed.
bool no_queries(const sel::Problem& p) { return p.batches.valid_queries() == 0; }

}  // namespace

std::size_t forward_workspace_bytes(const ForwardArgs& args, const Params& params) {
    const sel::Problem p = sel::validate_forward(args, params);
    return no_queries(p) ? 0 : sel::forward_workspace(p, detail::kernel_path());
}

std::size_t backward_workspace_bytes(const BackwardArgs& args, const Params& params) {
    const sel::Problem p = sel::validate_backward(args, params);
    return no_queries(p) ? 0 : sel::backward_workspace(p, detail::kernel_path());
}

void forward(const ForwardArgs& args, const Params& params, std::span<std::byte> workspace) {
    const sel::Problem p = sel::validate_forward(args, params);
    sel::check_topk_values(p);
    if (no_queries(p)) {
        for (const TensorView* t : {&p.out, &p.softmax_max, &p.softmax_sum}) detail::zero_view(*t);
        return;
    }
    // One path for the whole call; a workspace sized under another path (OPENNSA_KERNEL changed
    // since) that is too small is replaced by a fresh allocation. Sizing also rejects a problem
    // whose workspace cannot be represented, before anything is written.
    const detail::KernelPath path = detail::kernel_path();
    const std::size_t need = sel::forward_workspace(p, path);
    detail::guarded([&] {
        detail::with_workspace(need, workspace, [&](std::span<std::byte> ws) { sel::run_forward(p, ws, path); });
    });
}

void backward(const BackwardArgs& args, const Params& params, std::span<std::byte> workspace) {
    const sel::Problem p = sel::validate_backward(args, params);
    sel::check_topk_values(p);
    if (no_queries(p)) {
        for (const TensorView* t : {&p.dq, &p.dk, &p.dv}) detail::zero_view(*t);
        return;
    }
    const detail::KernelPath path = detail::kernel_path();
    const std::size_t need = sel::backward_workspace(p, path);
    detail::guarded([&] {
        detail::with_workspace(need, workspace, [&](std::span<std::byte> ws) { sel::run_backward(p, ws, path); });
    });
}

void forward(const ForwardArgs& args, const Params& params) { forward(args, params, {}); }
void backward(const BackwardArgs& args, const Params& params) { backward(args, params, {}); }

}  // namespace opennsa
