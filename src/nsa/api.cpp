// The native API: validate everything, check the topk values, find workspace, run the passes.
// Nothing is written to an output before all checks have passed.
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "nsa/ops.hpp"
#include "nsa/problem.hpp"

namespace opennsa {
namespace {

struct AlignedFree {
    void operator()(std::byte* p) const noexcept { ::operator delete[](p, std::align_val_t{4096}); }
};

// Runs `pass` on the caller's workspace when it is large enough and 64-byte aligned (the
// workspace layout aligns its pieces relative to the start), else on a fresh allocation, which is
// page-aligned so that the pieces sit at the same page offsets on every call (timings of a
// 64-byte-aligned heap workspace looked placement-dependent; later interleaved runs could not
// separate the two from the machine's noise).
template <class Pass>
void with_workspace(std::size_t need, std::span<std::byte> given, Pass&& pass) {
    if (given.size() >= need && reinterpret_cast<std::uintptr_t>(given.data()) % 64 == 0)
        return pass(given.first(need));
    std::unique_ptr<std::byte[], AlignedFree> own;
    try {
        own.reset(static_cast<std::byte*>(::operator new[](need, std::align_val_t{4096})));
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

// Zero bits are +0.0 in every float dtype: writes the value SPEC prescribes for outputs that
// no query contributes to, for any strides.
void zero_view(const TensorView& t) {
    const std::size_t elt = dtype_size(t.dtype);
    for (std::int64_t i = 0; i < t.shape[0]; ++i)
        for (std::int64_t j = 0; j < t.shape[1]; ++j)
            for (std::int64_t k = 0; k < t.shape[2]; ++k)
                std::memset(static_cast<char*>(t.data) +
                                (i * t.strides[0] + j * t.strides[1] + k * t.strides[2]) * static_cast<std::int64_t>(elt),
                            0, elt);
}

// No query row belongs to a batch (T1 = 0, or only padding rows): there is nothing to compute,
// every output is zero, and no workspace is needed.
bool no_queries(const detail::Problem& p) { return p.batches.valid_queries() == 0; }

}  // namespace

std::size_t forward_workspace_bytes(const ForwardArgs& args, const Params& params) {
    const detail::Problem p = detail::validate_forward(args, params);
    return no_queries(p) ? 0 : detail::forward_workspace(p, detail::kernel_path());
}

std::size_t backward_workspace_bytes(const BackwardArgs& args, const Params& params) {
    const detail::Problem p = detail::validate_backward(args, params);
    return no_queries(p) ? 0 : detail::backward_workspace(p, detail::kernel_path());
}

void forward(const ForwardArgs& args, const Params& params, std::span<std::byte> workspace) {
    const detail::Problem p = detail::validate_forward(args, params);
    detail::check_topk_values(p);
    if (no_queries(p)) {
        for (const TensorView* t : {&p.out, &p.softmax_max, &p.softmax_sum}) zero_view(*t);
        return;
    }
    guarded([&] {
        // One path for the whole call; a workspace sized under another path (OPENNSA_KERNEL changed
        // since) that is too small is replaced by a fresh allocation.
        const detail::KernelPath path = detail::kernel_path();
        with_workspace(detail::forward_workspace(p, path), workspace,
                       [&](std::span<std::byte> ws) { detail::run_forward(p, ws, path); });
    });
}

void backward(const BackwardArgs& args, const Params& params, std::span<std::byte> workspace) {
    const detail::Problem p = detail::validate_backward(args, params);
    detail::check_topk_values(p);
    if (no_queries(p)) {
        for (const TensorView* t : {&p.dq, &p.dk, &p.dv}) zero_view(*t);
        return;
    }
    guarded([&] {
        const detail::KernelPath path = detail::kernel_path();
        with_workspace(detail::backward_workspace(p, path), workspace,
                       [&](std::span<std::byte> ws) { detail::run_backward(p, ws, path); });
    });
}

void forward(const ForwardArgs& args, const Params& params) { forward(args, params, {}); }
void backward(const BackwardArgs& args, const Params& params) { backward(args, params, {}); }

}  // namespace opennsa
