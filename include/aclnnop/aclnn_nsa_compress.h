/* OpenNSA: Native Sparse Attention, training compression (aclnnNsaCompress), with CANN's two-phase
 * interface. Semantics, rules and errors: SPEC-FAMILY.md section 1; differences from CANN: docs/CAPI.md. */
#ifndef OPENNSA_ACLNNOP_ACLNN_NSA_COMPRESS_H_
#define OPENNSA_ACLNNOP_ACLNN_NSA_COMPRESS_H_

#include "aclnn/aclnn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Validates every argument, then returns the workspace the launch needs and an executor for it.
 * output is non-const in CANN's prototype too. */
ACL_FUNC_VISIBILITY aclnnStatus aclnnNsaCompressGetWorkspaceSize(
    const aclTensor* input, const aclTensor* weight, const aclIntArray* actSeqLenOptional, char* layoutOptional,
    int64_t compressBlockSize, int64_t compressStride, int64_t actSeqLenType, aclTensor* output,
    uint64_t* workspaceSize, aclOpExecutor** executor);

/* Runs the executor with a workspace of at least the size returned above (64-byte aligned). */
ACL_FUNC_VISIBILITY aclnnStatus aclnnNsaCompress(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                                 aclrtStream stream);

#ifdef __cplusplus
}
#endif

#endif /* OPENNSA_ACLNNOP_ACLNN_NSA_COMPRESS_H_ */
