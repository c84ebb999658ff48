// Workspace: carving one caller- or library-provided buffer into aligned pieces, and running a
// pass on it. Shared by every operator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>

#include "core/checked.hpp"

namespace opennsa::detail {

// Carves a workspace into 64-byte-aligned pieces. Used twice with the same sequence of requests:
// once without memory to size it, once with memory to place the pieces, so the size reported to
// a caller is exactly what the pass uses. Every size is overflow-checked: a problem whose
// workspace cannot be represented is an invalid_argument error at sizing time, never a wrap.
class Carver {
public:
    explicit Carver(std::byte* base = nullptr) : base_(base) {}

    // A piece of prod(dims) elements of T.
    template <class T>
    std::span<T> take(std::initializer_list<std::int64_t> dims) {
        const std::int64_t count = checked_product(dims, "a workspace piece");
        const std::int64_t bytes = checked_product({count, static_cast<std::int64_t>(sizeof(T))}, "a workspace piece");
        const std::int64_t start = checked_add(offset_, 63, "the workspace") & ~std::int64_t{63};
        offset_ = checked_add(start, bytes, "the workspace");
        T* ptr = base_ ? reinterpret_cast<T*>(base_ + start) : nullptr;
        return {ptr, static_cast<std::size_t>(base_ ? count : 0)};
    }
    template <class T>
    std::span<T> take(std::int64_t count) {
        return take<T>({count});
    }
    std::size_t size() const noexcept { return static_cast<std::size_t>(offset_); }

private:
    std::byte* base_;
    std::int64_t offset_ = 0;
};

// Runs pass(ws) on the caller's workspace when it holds `need` bytes and is 64-byte aligned (the
// carving aligns pieces relative to its start), else on a fresh page-aligned allocation (an
// allocation failure is ErrorCode::internal, "out of memory").
void run_with_workspace(std::size_t need, std::span<std::byte> given, void (*pass)(void*, std::span<std::byte>),
                        void* ctx);
template <class Pass>
void with_workspace(std::size_t need, std::span<std::byte> given, Pass&& pass) {
    run_with_workspace(
        need, given, [](void* c, std::span<std::byte> ws) { (*static_cast<std::remove_reference_t<Pass>*>(c))(ws); },
        &pass);
}

// Runs fn; failures after validation (memory, bugs) become ErrorCode::internal, an Error passes.
void guarded_raw(void (*fn)(void*), void* ctx);
template <class Fn>
void guarded(Fn&& fn) {
    guarded_raw([](void* c) { (*static_cast<std::remove_reference_t<Fn>*>(c))(); }, &fn);
}

// Writes +0.0 (zero bits, in every float dtype) to every element of a view of any rank and
// strides: the value outputs get where nothing contributes.
void zero_view(const TensorView& t);

}  // namespace opennsa::detail
