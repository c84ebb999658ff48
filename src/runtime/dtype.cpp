// Element types: fp16 conversions (the library's round-to-nearest-even ones) and sizes.
#include "acl/acl_base.h"
#include "nsa/dtype.hpp"
#include "runtime/raw_enum.hpp"

extern "C" {

float aclFloat16ToFloat(aclFloat16 value) { return opennsa::detail::f16_to_f32(value); }

aclFloat16 aclFloatToFloat16(float value) { return opennsa::detail::f32_to_f16(value); }

size_t aclDataTypeSize(aclDataType dataType) {
    switch (opennsa::capi::raw_enum(dataType)) {
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
        case ACL_DT_UNDEFINED:
        case ACL_STRING: return 0;
    }
    return 0;  // a value outside the enum
}

}  // extern "C"
