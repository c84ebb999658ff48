// TensorView helpers and dtype facts.
#include <algorithm>

#include "opennsa/core.hpp"
#include "core/error.hpp"

namespace opennsa {

const char* dtype_name(DType t) noexcept {
    switch (t) {
        case DType::f16: return "fp16";
        case DType::bf16: return "bf16";
        case DType::f32: return "fp32";
        case DType::f64: return "fp64";
        case DType::i32: return "int32";
        case DType::i64: return "int64";
        case DType::u8: return "uint8";
        case DType::boolean: return "bool";
    }
    return "unknown";
}

std::size_t dtype_size(DType t) noexcept {
    switch (t) {
        case DType::f16:
        case DType::bf16: return 2;
        case DType::f32:
        case DType::i32: return 4;
        case DType::f64:
        case DType::i64: return 8;
        case DType::u8:
        case DType::boolean: return 1;
    }
    return 1;
}

TensorView TensorView::contiguous(const void* data, DType dtype, std::initializer_list<std::int64_t> shape) {
    if (shape.size() > static_cast<std::size_t>(kMaxRank))
        detail::fail(ErrorCode::invalid_argument, "TensorView::contiguous: rank above 4");
    TensorView t;
    t.data = const_cast<void*>(data);
    t.dtype = dtype;
    t.rank = static_cast<int>(shape.size());
    std::copy(shape.begin(), shape.end(), t.shape);
    std::int64_t stride = 1;
    for (int d = t.rank - 1; d >= 0; --d) {
        t.strides[d] = stride;
        stride *= t.shape[d] > 0 ? t.shape[d] : 1;
    }
    return t;
}

TensorView TensorView::strided(const void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                               std::initializer_list<std::int64_t> strides) {
    if (shape.size() != strides.size())
        detail::fail(ErrorCode::invalid_argument, "TensorView::strided: shape and strides differ in length");
    TensorView t = contiguous(data, dtype, shape);
    std::copy(strides.begin(), strides.end(), t.strides);
    return t;
}

std::int64_t TensorView::numel() const noexcept {
    if (rank <= 0) return 0;
    std::int64_t n = 1;
    for (int d = 0; d < rank && d < kMaxRank; ++d)
        if (shape[d] < 0 || __builtin_mul_overflow(n, shape[d], &n)) return -1;  // not a valid shape
    return n;
}

const char* version() noexcept { return "0.1.0"; }

}  // namespace opennsa
