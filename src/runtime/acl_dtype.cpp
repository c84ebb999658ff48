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

const char* acl_dtype_name(long long raw) noexcept {
    switch (raw) {
        case ACL_FLOAT: return "ACL_FLOAT";
        case ACL_FLOAT16: return "ACL_FLOAT16";
        case ACL_INT8: return "ACL_INT8";
        case ACL_INT32: return "ACL_INT32";
        case ACL_UINT8: return "ACL_UINT8";
        case ACL_INT16: return "ACL_INT16";
        case ACL_UINT16: return "ACL_UINT16";
        case ACL_UINT32: return "ACL_UINT32";
        case ACL_INT64: return "ACL_INT64";
        case ACL_UINT64: return "ACL_UINT64";
        case ACL_DOUBLE: return "ACL_DOUBLE";
        case ACL_BOOL: return "ACL_BOOL";
        case ACL_STRING: return "ACL_STRING";
        case ACL_COMPLEX64: return "ACL_COMPLEX64";
        case ACL_COMPLEX128: return "ACL_COMPLEX128";
        case ACL_BF16: return "ACL_BF16";
        case ACL_DT_UNDEFINED: return "ACL_DT_UNDEFINED";
        default: return "not an aclDataType";
    }
}

}  // namespace opennsa::capi

extern "C" {

float aclFloat16ToFloat(aclFloat16 value) { return opennsa::detail::f16_to_f32(value); }

aclFloat16 aclFloatToFloat16(float value) { return opennsa::detail::f32_to_f16(value); }

// Read by its bytes: a C caller may pass any int, which is not a valid value to load as the enum.
size_t aclDataTypeSize(aclDataType dataType) { return opennsa::capi::acl_dtype_size(opennsa::capi::raw_enum(dataType)); }

}  // extern "C"
