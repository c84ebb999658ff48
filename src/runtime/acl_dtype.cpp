// Element types: fp16 conversions (the library's round-to-nearest-even ones) and sizes.
#include "acl/acl_base.h"
#include "core/convert.hpp"
#include "runtime/raw_enum.hpp"
#include "runtime/runtime.hpp"

namespace opennsa::capi {

std::size_t acl_dtype_size(long long raw) noexcept {
    switch (raw) {
        case ACL_INT8:
        case ACL_UINT8:
        case ACL_BOOL: return 1;
        case ACL_FLOAT16:
        case ACL_BF16:
        case ACL_INT16:
        case ACL_UINT16: return 2;
        case ACL_FLOAT:
        case ACL_INT32:
        case ACL_UINT32: return 4;
        case ACL_INT64:
        case ACL_UINT64:
        case ACL_DOUBLE:
        case ACL_COMPLEX64: return 8;
        case ACL_COMPLEX128: return 16;
        default: return 0;  // ACL_DT_UNDEFINED, ACL_STRING, or a value outside the enum
    }
}

}  // namespace opennsa::capi

extern "C" {

float aclFloat16ToFloat(aclFloat16 value) { return opennsa::detail::f16_to_f32(value); }

aclFloat16 aclFloatToFloat16(float value) { return opennsa::detail::f32_to_f16(value); }

// Read by its bytes: a C caller may pass any int, which is not a valid value to load as the enum.
size_t aclDataTypeSize(aclDataType dataType) { return opennsa::capi::acl_dtype_size(opennsa::capi::raw_enum(dataType)); }

}  // extern "C"
