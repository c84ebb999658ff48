#include "aclnn/convert.hpp"

#include <cstring>

#include "aclnn/meta.hpp"
#include "aclnn/status.hpp"
#include "runtime/raw_enum.hpp"
#include "runtime/runtime.hpp"

namespace opennsa::capi {
namespace {

// By reference and read by its bytes: the field may hold any int a C caller passed.
DType to_dtype(const aclDataType& dt, const char* name) {
    const long long t = raw_enum(dt);
    switch (t) {
        case ACL_FLOAT16: return DType::f16;
        case ACL_BF16: return DType::bf16;
        case ACL_FLOAT: return DType::f32;
        case ACL_INT32: return DType::i32;
        case ACL_UINT8: return DType::u8;
        case ACL_BOOL: return DType::boolean;
        default: break;
    }
    raise(ErrorCode::invalid_argument, name, ": aclDataType ", t, " (", capi::acl_dtype_name(t),
          ") is not supported (OpenNSA's tensors are ACL_FLOAT16, ACL_BF16 or ACL_FLOAT data, ACL_INT32 "
          "indices, tables and slots, ACL_BOOL or ACL_UINT8 masks)");
}

// When the caller described its buffer (storageDims), every element of the view must lie inside
// it: that is the one bound the C layer knows and the native one does not.
void check_storage(const aclTensor& t, const char* name) {
    if (t.storage_dims.empty()) return;
    std::int64_t storage = 1;
    for (std::int64_t d : t.storage_dims)
        if (d < 0 || __builtin_mul_overflow(storage, d, &storage))
            raise(ErrorCode::invalid_argument, name, ": storage shape has a negative or overflowing dimension");
    // An empty (or invalid, reported later) view reads nothing, whichever dimension is 0: checked
    // before any reach is summed, because the other dimensions' reach may overflow.
    for (std::int64_t d : t.view_dims)
        if (d <= 0) return;
    std::int64_t lo = t.offset, hi = t.offset;
    for (std::size_t d = 0; d < t.view_dims.size(); ++d) {
        std::int64_t reach = 0;
        if (__builtin_mul_overflow(t.view_dims[d] - 1, t.strides[d], &reach) ||
            __builtin_add_overflow(reach < 0 ? lo : hi, reach, reach < 0 ? &lo : &hi))
            raise(ErrorCode::invalid_argument, name, ": view shape, strides and offset overflow int64");
    }
    if (lo < 0 || hi >= storage)
        raise(ErrorCode::invalid_argument, name, ": the view (offset ", t.offset, ") reaches elements [", lo, ", ",
              hi, "], outside its storage of ", storage, " elements");
}

}  // namespace

TensorView to_view(const aclTensor* t, const char* name) {
    TensorView v;
    if (t == nullptr) return v;
    const std::size_t rank = t->view_dims.size();
    if (rank < 1 || rank > static_cast<std::size_t>(kMaxRank))
        raise(ErrorCode::invalid_argument, name, ": rank ", rank, " is outside [1, ", kMaxRank, "]");
    v.dtype = to_dtype(t->dtype, name);
    v.rank = static_cast<int>(rank);
    for (std::size_t d = 0; d < rank; ++d) {
        v.shape[d] = t->view_dims[d];
        v.strides[d] = t->strides[d];
    }
    check_storage(*t, name);
    bool empty = false;
    for (std::size_t d = 0; d < rank; ++d) empty = empty || t->view_dims[d] == 0;
    // An empty view reads nothing, so its offset may be anything (as its storage check allows):
    // the pointer is kept as given rather than offset by an amount that may not fit in int64.
    if (t->data != nullptr && empty) {
        v.data = t->data;
    } else if (t->data != nullptr) {
        std::int64_t bytes = 0;
        if (__builtin_mul_overflow(t->offset, static_cast<std::int64_t>(dtype_size(v.dtype)), &bytes))
            raise(ErrorCode::invalid_argument, name, ": offset ", t->offset, " overflows int64 bytes");
        // Integer arithmetic, not pointer arithmetic: the storage check bounds the offset by the
        // declared storage, not by the caller's allocation, and a pointer formed outside its object
        // is undefined.
        v.data = reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(t->data) + static_cast<std::uintptr_t>(bytes));
    }
    return v;
}

std::optional<std::vector<std::int64_t>> to_seqlens(const aclIntArray* a) {
    if (a == nullptr) return std::nullopt;
    return a->values;
}

void check_layout(const char* inputLayout) {
    require(inputLayout, "inputLayout");
    if (std::strcmp(inputLayout, "TND") != 0)
        raise(ErrorCode::invalid_argument, "inputLayout = \"", inputLayout, "\" is not supported (only \"TND\")");
}

Params to_select_params(double scaleValue, std::int64_t headNum, std::int64_t sparseMode,
                        std::int64_t selectedBlockSize, std::int64_t selectedBlockCount,
                        const aclIntArray* actualSeqQLenOptional, const aclIntArray* actualSeqKvLenOptional) {
    Params p;
    p.scale = scaleValue;
    p.head_num = headNum;
    p.sparse_mode = sparseMode;
    p.block_size = selectedBlockSize;
    p.block_count = selectedBlockCount;
    p.cu_seqlens_q = to_seqlens(actualSeqQLenOptional);
    p.cu_seqlens_kv = to_seqlens(actualSeqKvLenOptional);
    return p;
}

}  // namespace opennsa::capi
