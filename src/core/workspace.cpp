#include "core/workspace.hpp"

#include <cstring>
#include <memory>
#include <new>
#include <string>

namespace opennsa::detail {
namespace {

struct AlignedFree {
    void operator()(std::byte* p) const noexcept { ::operator delete[](p, std::align_val_t{4096}); }
};

}  // namespace

void run_with_workspace(std::size_t need, std::span<std::byte> given, void (*pass)(void*, std::span<std::byte>),
                        void* ctx) {
    if (given.size() >= need && reinterpret_cast<std::uintptr_t>(given.data()) % 64 == 0)
        return pass(ctx, given.first(need));
    // Page-aligned, so that the pieces sit at the same page offsets on every call.
    std::unique_ptr<std::byte[], AlignedFree> own;
    try {
        own.reset(static_cast<std::byte*>(::operator new[](need, std::align_val_t{4096})));
    } catch (const std::bad_alloc&) {
        fail(ErrorCode::internal, "out of memory: the workspace needs " + std::to_string(need) + " bytes");
    }
    pass(ctx, std::span<std::byte>(own.get(), need));
}

void guarded_raw(void (*fn)(void*), void* ctx) {
    try {
        fn(ctx);
    } catch (const Error&) {
        throw;
    } catch (const std::bad_alloc&) {
        fail(ErrorCode::internal, "out of memory while computing");
    } catch (const std::exception& e) {
        fail(ErrorCode::internal, std::string("internal error: ") + e.what());
    }
}

void zero_view(const TensorView& t) {
    const std::int64_t elt = static_cast<std::int64_t>(dtype_size(t.dtype));
    std::int64_t shape[kMaxRank] = {1, 1, 1, 1}, stride[kMaxRank] = {0, 0, 0, 0};
    for (int d = 0; d < t.rank; ++d) {
        shape[d] = t.shape[d];
        stride[d] = t.strides[d];
    }
    for (std::int64_t i = 0; i < shape[0]; ++i)
        for (std::int64_t j = 0; j < shape[1]; ++j)
            for (std::int64_t k = 0; k < shape[2]; ++k)
                for (std::int64_t l = 0; l < shape[3]; ++l)
                    std::memset(static_cast<char*>(t.data) +
                                    (i * stride[0] + j * stride[1] + k * stride[2] + l * stride[3]) * elt,
                                0, static_cast<std::size_t>(elt));
}

}  // namespace opennsa::detail
