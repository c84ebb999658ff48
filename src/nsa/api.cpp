// The native API: validate everything, check the topk values, find workspace, run the passes.
// Nothing is written to an output before all checks have passed.
#include <memory>
#include <new>
#include <string>

#include "nsa/ops.hpp"
#include "nsa/problem.hpp"

namespace opennsa {
namespace {

struct AlignedFree {
    void operator()(std::byte* p) const noexcept { ::operator delete[](p, std::align_val_t{64}); }
};

// Runs `pass` on the caller's workspace when it is large enough, else on a fresh allocation.
template <class Pass>
void with_workspace(std::size_t need, std::span<std::byte> given, Pass&& pass) {
    if (given.size() >= need) return pass(given.first(need));
    std::unique_ptr<std::byte[], AlignedFree> own;
    try {
        own.reset(static_cast<std::byte*>(::operator new[](need, std::align_val_t{64})));
    } catch (const std::bad_alloc&) {
        detail::fail(ErrorCode::internal, "out of memory: the workspace needs " + std::to_string(need) + " bytes");
    }
    pass(std::span<std::byte>(own.get(), need));
}

// Failures after validation are internal errors (memory, bugs), reported as Error all the same.
template <class Fn>
void guarded(Fn&& fn) {
    try {
        fn();
    } catch (const Error&) {
        throw;
    } catch (const std::bad_alloc&) {
        detail::fail(ErrorCode::internal, "out of memory while computing");
    } catch (const std::exception& e) {
        detail::fail(ErrorCode::internal, std::string("internal error: ") + e.what());
    }
}

}  // namespace

std::size_t forward_workspace_bytes(const ForwardArgs& args, const Params& params) {
    return detail::forward_workspace(detail::validate_forward(args, params));
}

std::size_t backward_workspace_bytes(const BackwardArgs& args, const Params& params) {
    return detail::backward_workspace(detail::validate_backward(args, params));
}

void forward(const ForwardArgs& args, const Params& params, std::span<std::byte> workspace) {
    const detail::Problem p = detail::validate_forward(args, params);
    detail::check_topk_values(p);
    guarded([&] {
        with_workspace(detail::forward_workspace(p), workspace,
                       [&](std::span<std::byte> ws) { detail::run_forward(p, ws); });
    });
}

void backward(const BackwardArgs& args, const Params& params, std::span<std::byte> workspace) {
    const detail::Problem p = detail::validate_backward(args, params);
    detail::check_topk_values(p);
    guarded([&] {
        with_workspace(detail::backward_workspace(p), workspace,
                       [&](std::span<std::byte> ws) { detail::run_backward(p, ws); });
    });
}

void forward(const ForwardArgs& args, const Params& params) { forward(args, params, {}); }
void backward(const BackwardArgs& args, const Params& params) { backward(args, params, {}); }

}  // namespace opennsa
