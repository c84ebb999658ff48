/* OpenNSA: CANN-compatible base types (source level). Names and values follow Huawei CANN's
 * acl/acl_base.h so programs written for CANN compile unchanged; see docs/CAPI.md. */
#ifndef OPENNSA_ACL_ACL_BASE_H_
#define OPENNSA_ACL_ACL_BASE_H_

#include <stddef.h>
#include <stdint.h>

/* The library is built with hidden visibility; every C entry point is exported through this. */
#ifndef ACL_FUNC_VISIBILITY
#if defined(_WIN32)
#define ACL_FUNC_VISIBILITY __declspec(dllexport)
#else
#define ACL_FUNC_VISIBILITY __attribute__((visibility("default")))
#endif
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t aclFloat16;
typedef int aclError;

/* Error codes are macros (not `static const int`) so that C translation units that include this
 * header but use few of them stay free of unused-variable warnings. */
#define ACL_SUCCESS 0
#define ACL_ERROR_NONE 0
#define ACL_ERROR_INVALID_PARAM 100000
#define ACL_ERROR_UNINITIALIZE 100001
#define ACL_ERROR_REPEAT_INITIALIZE 100002
#define ACL_ERROR_REPEAT_FINALIZE 100037
#define ACL_ERROR_BAD_ALLOC 200000
#define ACL_ERROR_INTERNAL_ERROR 500000
/* From CANN's runtime codes (acl/error_codes/rt_error_codes.h): the thread has no current context. */
#define ACL_ERROR_RT_CONTEXT_NULL 107002

typedef enum {
    ACL_DT_UNDEFINED = -1,
    ACL_FLOAT = 0,
    ACL_FLOAT16 = 1,
    ACL_INT8 = 2,
    ACL_INT32 = 3,
    ACL_UINT8 = 4,
    ACL_INT16 = 6,
    ACL_UINT16 = 7,
    ACL_UINT32 = 8,
    ACL_INT64 = 9,
    ACL_UINT64 = 10,
    ACL_DOUBLE = 11,
    ACL_BOOL = 12,
    ACL_STRING = 13,
    ACL_COMPLEX64 = 16,
    ACL_COMPLEX128 = 17,
    ACL_BF16 = 27
} aclDataType;

typedef enum {
    ACL_FORMAT_UNDEFINED = -1,
    ACL_FORMAT_NCHW = 0,
    ACL_FORMAT_NHWC = 1,
    ACL_FORMAT_ND = 2
} aclFormat;

/* fp16 <-> fp32, rounding to nearest even. */
ACL_FUNC_VISIBILITY float aclFloat16ToFloat(aclFloat16 value);
ACL_FUNC_VISIBILITY aclFloat16 aclFloatToFloat16(float value);

/* Bytes per element of dataType; 0 for ACL_DT_UNDEFINED, ACL_STRING and unknown values. */
ACL_FUNC_VISIBILITY size_t aclDataTypeSize(aclDataType dataType);

#ifdef __cplusplus
}
#endif

#endif /* OPENNSA_ACL_ACL_BASE_H_ */
