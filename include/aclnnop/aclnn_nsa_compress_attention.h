/* OpenNSA: Native Sparse Attention, training attention over compressed keys/values plus the top-k
 * block selection (aclnnNsaCompressAttention), with CANN's two-phase interface. Semantics, rules and
 * errors: SPEC-FAMILY.md section 3 (softmaxMaxOut / softmaxSumOut are stored batch by batch,
 * head-major: section 3.4). */
#ifndef OPENNSA_ACLNNOP_ACLNN_NSA_COMPRESS_ATTENTION_H_
#define OPENNSA_ACLNNOP_ACLNN_NSA_COMPRESS_ATTENTION_H_

#include "aclnn/aclnn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Validates every argument, then returns the workspace the launch needs and an executor for it. */
ACL_FUNC_VISIBILITY aclnnStatus aclnnNsaCompressAttentionGetWorkspaceSize(
    const aclTensor* query, const aclTensor* key, const aclTensor* value, const aclTensor* attenMaskOptional,
    const aclTensor* topkMaskOptional, const aclIntArray* actualSeqQLenOptional,
    const aclIntArray* actualCmpSeqKvLenOptional, const aclIntArray* actualSelSeqKvLenOptional, double scaleValue,
    int64_t headNum, char* inputLayout, int64_t sparseMode, int64_t compressBlockSize, int64_t compressStride,
    int64_t selectBlockSize, int64_t selectBlockCount, const aclTensor* softmaxMaxOut,
    const aclTensor* softmaxSumOut, const aclTensor* attentionOutOut, const aclTensor* topkIndicesOut,
    uint64_t* workspaceSize, aclOpExecutor** executor);

/* Runs the executor with a workspace of at least the size returned above (64-byte aligned). */
ACL_FUNC_VISIBILITY aclnnStatus aclnnNsaCompressAttention(void* workspace, uint64_t workspaceSize,
                                                          aclOpExecutor* executor, const aclrtStream stream);

#ifdef __cplusplus
}
#endif

#endif /* OPENNSA_ACLNNOP_ACLNN_NSA_COMPRESS_ATTENTION_H_ */
