/* Every public C header compiled as C99 under -Wall -Wextra -Wpedantic (-Werror in CI). */
#include "acl/acl.h"
#include "aclnn/acl_meta.h"
#include "aclnn/aclnn_base.h"
#include "aclnnop/aclnn_nsa_selected_attention.h"
#include "aclnnop/aclnn_nsa_selected_attention_grad.h"
#include "aclnnop/aclnn_nsa_compress_attention.h"

int capi_c_header_check(void);

/* Returns 0 when a few calls through the C declarations behave. */
int capi_c_header_check(void) {
    const int64_t dims[2] = {2, 3};
    aclTensor* t;
    aclDataType dt = ACL_DT_UNDEFINED;
    int bad = 0;
    if (aclDataTypeSize(ACL_BF16) != 2) bad |= 1;
    if (aclFloatToFloat16(aclFloat16ToFloat((aclFloat16)0x3C00)) != 0x3C00) bad |= 2;
    t = aclCreateTensor(dims, 2, ACL_FLOAT16, NULL, 0, ACL_FORMAT_ND, dims, 2, NULL);
    if (t == NULL || aclGetDataType(t, &dt) != ACLNN_SUCCESS || dt != ACL_FLOAT16) bad |= 4;
    if (aclDestroyTensor(t) != ACLNN_SUCCESS) bad |= 8;
    if (aclrtSetDevice(7) != ACL_ERROR_INVALID_PARAM || aclGetRecentErrMsg()[0] == '\0') bad |= 16;
    return bad;
}
