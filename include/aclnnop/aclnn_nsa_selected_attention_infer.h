/* OpenNSA: Native Sparse Attention, decoding: selected attention on a paged KV cache
 * (aclnnNsaSelectedAttentionInfer), with CANN's two-phase interface. Semantics, rules and errors:
 * SPEC-FAMILY.md section 6. Also reachable as aclnnop/aclnn_nsa_select_attention_infer.h, the
 * name CANN's earlier documentation used. */
#ifndef OPENNSA_ACLNNOP_ACLNN_NSA_SELECTED_ATTENTION_INFER_H_
#define OPENNSA_ACLNNOP_ACLNN_NSA_SELECTED_ATTENTION_INFER_H_

#include "aclnn/aclnn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Validates every argument, then returns the workspace the launch needs and an executor for it. */
ACL_FUNC_VISIBILITY aclnnStatus aclnnNsaSelectedAttentionInferGetWorkspaceSize(
    const aclTensor* query, const aclTensor* key, const aclTensor* value, const aclTensor* topkIndices,
    const aclTensor* attenMaskOptional, const aclTensor* blockTableOptional, const aclIntArray* actualQSeqLenOptional,
    const aclIntArray* actualKvSeqLenOptional, char* layoutOptional, int64_t numHeads, int64_t numKeyValueHeads,
    int64_t selectBlockSize, int64_t selectBlockCount, int64_t pageBlockSize, double scaleValue, int64_t sparseMode,
    aclTensor* output, uint64_t* workspaceSize, aclOpExecutor** executor);

/* Runs the executor with a workspace of at least the size returned above (64-byte aligned). */
ACL_FUNC_VISIBILITY aclnnStatus aclnnNsaSelectedAttentionInfer(void* workspace, uint64_t workspaceSize,
                                                               aclOpExecutor* executor, const aclrtStream stream);

#ifdef __cplusplus
}
#endif

#endif /* OPENNSA_ACLNNOP_ACLNN_NSA_SELECTED_ATTENTION_INFER_H_ */
