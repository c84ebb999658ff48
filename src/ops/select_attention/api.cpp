// The selected attention's native API: validate everything, check the topk values, find
// workspace, run the passes. Nothing is written to an output before all checks have passed.
#include "core/workspace.hpp"
#include "ops/select_attention/passes.hpp"
#include "ops/select_attention/problem.hpp"

namespace opennsa {
namespace {

namespace sel = detail::select_attention;

// No batch has both query rows and keys (T1 = 0, only padding rows, or no keys where there are
// queries): no row sees anything, every output is zero, and neither workspace nor scratch is
// needed (scratch grows with the head dims, which a broadcast view may make enormous).
bool nothing_to_compute(const sel::Problem& p) {
    for (std::int64_t b = 0; b < p.batches.count(); ++b)
        if (p.batches.q[b + 1] > p.batches.q[b] && p.batches.key_count(b) > 0) return false;
    return true;
}

}  // namespace

std::size_t forward_workspace_bytes(const ForwardArgs& args, const Params& params) {
    const sel::Problem p = sel::validate_forward(args, params);
    return nothing_to_compute(p) ? 0 : sel::forward_workspace(p, detail::kernel_path());
}

std::size_t backward_workspace_bytes(const BackwardArgs& args, const Params& params) {
    const sel::Problem p = sel::validate_backward(args, params);
    return nothing_to_compute(p) ? 0 : sel::backward_workspace(p, detail::kernel_path());
}

void forward(const ForwardArgs& args, const Params& params, std::span<std::byte> workspace) {
    const sel::Problem p = sel::validate_forward(args, params);
    sel::check_topk_values(p);
    if (nothing_to_compute(p)) {
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
    if (nothing_to_compute(p)) {
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
