/* OpenNSA: Native Sparse Attention, backward of the training compression (aclnnNsaCompressGrad),
 * with CANN's two-phase interface. Semantics, rules and errors: SPEC-FAMILY.md section 2. The
 * doubled "Optional" in two parameter names is CANN's. */
#ifndef OPENNSA_ACLNNOP_ACLNN_NSA_COMPRESS_GRAD_H_
#define OPENNSA_ACLNNOP_ACLNN_NSA_COMPRESS_GRAD_H_

#include "aclnn/aclnn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Validates every argument, then returns the workspace the launch needs and an executor for it.
 * Order as CANN: inputs, attributes (compressBlockSize, compressStride, actSeqLenType, layout), outputs. */
ACL_FUNC_VISIBILITY aclnnStatus aclnnNsaCompressGradGetWorkspaceSize(
    const aclTensor* outputGrad, const aclTensor* input, const aclTensor* weight,
    const aclIntArray* actSeqLenOptionalOptional, int64_t compressBlockSize, int64_t compressStride,
    int64_t actSeqLenType, char* layoutOptionalOptional, const aclTensor* inputGradOut,
    const aclTensor* weightGradOut, uint64_t* workspaceSize, aclOpExecutor** executor);

/* Runs the executor with a workspace of at least the size returned above (64-byte aligned). */
ACL_FUNC_VISIBILITY aclnnStatus aclnnNsaCompressGrad(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                                     aclrtStream stream);

#ifdef __cplusplus
}
#endif

#endif /* OPENNSA_ACLNNOP_ACLNN_NSA_COMPRESS_GRAD_H_ */
