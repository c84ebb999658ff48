/* Every public C header compiled as C99 under -Wall -Wextra -Wpedantic (-Werror in CI). The
 * functions OpenNSA implements are also bound to function pointers of CANN's exact types here
 * (that needs them linked); the operators not implemented yet are only included - their
 * prototypes are pinned without linking by test_capi_prototypes.cpp. */
#include "acl/acl.h"
#include "aclnn/acl_meta.h"
#include "aclnn/aclnn_base.h"
#include "aclnnop/aclnn_nsa_compress.h"
#include "aclnnop/aclnn_nsa_compress_attention.h"
#include "aclnnop/aclnn_nsa_compress_attention_infer.h"
#include "aclnnop/aclnn_nsa_compress_grad.h"
#include "aclnnop/aclnn_nsa_compress_with_cache.h"
#include "aclnnop/aclnn_nsa_select_attention_infer.h"
#include "aclnnop/aclnn_nsa_selected_attention.h"
#include "aclnnop/aclnn_nsa_selected_attention_grad.h"
#include "aclnnop/aclnn_nsa_selected_attention_infer.h"

int capi_c_header_check(void);

/* Returns 0 when a few calls through the C declarations behave. */
int capi_c_header_check(void) {
    const int64_t dims[2] = {2, 3};
    aclTensor* t;
    aclDataType dt = ACL_DT_UNDEFINED;
    aclrtContext ctx = NULL;
    int bad = 0;

    /* The implemented entry points, through pointers of CANN's types. */
    aclError (*create_context)(aclrtContext*, int32_t) = aclrtCreateContext;
    aclError (*destroy_context)(aclrtContext) = aclrtDestroyContext;
    aclError (*set_current_context)(aclrtContext) = aclrtSetCurrentContext;
    aclError (*get_current_context)(aclrtContext*) = aclrtGetCurrentContext;
    aclnnStatus (*fwd_workspace)(const aclTensor*, const aclTensor*, const aclTensor*, const aclTensor*,
                                 const aclTensor*, const aclIntArray*, const aclIntArray*, double, int64_t, char*,
                                 int64_t, int64_t, int64_t, const aclTensor*, const aclTensor*, const aclTensor*,
                                 uint64_t*, aclOpExecutor**) = aclnnNsaSelectedAttentionGetWorkspaceSize;
    aclnnStatus (*fwd_launch)(void*, uint64_t, aclOpExecutor*, aclrtStream) = aclnnNsaSelectedAttention;
    aclnnStatus (*bwd_workspace)(const aclTensor*, const aclTensor*, const aclTensor*, const aclTensor*,
                                 const aclTensor*, const aclTensor*, const aclTensor*, const aclTensor*,
                                 const aclIntArray*, const aclIntArray*, const aclTensor*, double, int64_t, int64_t,
                                 int64_t, char*, int64_t, const aclTensor*, const aclTensor*, const aclTensor*,
                                 uint64_t*, aclOpExecutor**) = aclnnNsaSelectedAttentionGradGetWorkspaceSize;
    aclnnStatus (*bwd_launch)(void*, uint64_t, aclOpExecutor*, aclrtStream) = aclnnNsaSelectedAttentionGrad;
    aclnnStatus (*cmp_workspace)(const aclTensor*, const aclTensor*, const aclTensor*, const aclTensor*,
                                 const aclTensor*, const aclIntArray*, const aclIntArray*, const aclIntArray*, double,
                                 int64_t, char*, int64_t, int64_t, int64_t, int64_t, int64_t, const aclTensor*,
                                 const aclTensor*, const aclTensor*, const aclTensor*, uint64_t*, aclOpExecutor**) =
        aclnnNsaCompressAttentionGetWorkspaceSize;
    aclnnStatus (*cmp_launch)(void*, uint64_t, aclOpExecutor*, const aclrtStream) = aclnnNsaCompressAttention;

    if (aclDataTypeSize(ACL_BF16) != 2) bad |= 1;
    if (aclFloatToFloat16(aclFloat16ToFloat((aclFloat16)0x3C00)) != 0x3C00) bad |= 2;
    t = aclCreateTensor(dims, 2, ACL_FLOAT16, NULL, 0, ACL_FORMAT_ND, dims, 2, NULL);
    if (t == NULL || aclGetDataType(t, &dt) != ACLNN_SUCCESS || dt != ACL_FLOAT16) bad |= 4;
    if (aclDestroyTensor(t) != ACLNN_SUCCESS) bad |= 8;
    if (aclrtSetDevice(7) != ACL_ERROR_INVALID_PARAM || aclGetRecentErrMsg()[0] == '\0') bad |= 16;
    /* Called without aclInit (this check runs first): contexts need it, bad handles are errors. */
    if (create_context(&ctx, 0) != ACL_ERROR_UNINITIALIZE || ctx != NULL) bad |= 32;
    if (destroy_context(NULL) != ACL_ERROR_INVALID_PARAM || set_current_context(NULL) != ACL_ERROR_INVALID_PARAM)
        bad |= 64;
    if (get_current_context(&ctx) != ACL_ERROR_RT_CONTEXT_NULL || ctx != NULL) bad |= 128;
    if (fwd_workspace(NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1.0, 1, NULL, 0, 1, 1, NULL, NULL, NULL, NULL, NULL) !=
        ACLNN_ERR_PARAM_NULLPTR)
        bad |= 256;
    if (bwd_workspace(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1.0, 1, 1, 1, NULL, 0, NULL,
                      NULL, NULL, NULL, NULL) != ACLNN_ERR_PARAM_NULLPTR)
        bad |= 512;
    if (fwd_launch(NULL, 0, NULL, NULL) == ACLNN_SUCCESS || bwd_launch(NULL, 0, NULL, NULL) == ACLNN_SUCCESS) bad |= 1024;
    if (cmp_workspace(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1.0, 1, NULL, 1, 32, 16, 64, 16, NULL, NULL, NULL,
                      NULL, NULL, NULL) != ACLNN_ERR_PARAM_NULLPTR ||
        cmp_launch(NULL, 0, NULL, NULL) == ACLNN_SUCCESS)
        bad |= 2048;
    return bad;
}
