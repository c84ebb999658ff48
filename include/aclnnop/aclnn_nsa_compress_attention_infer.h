/* OpenNSA: Native Sparse Attention, decoding: compressed attention plus top-k block selection on a
 * paged compressed cache (aclnnNsaCompressAttentionInfer), with CANN's two-phase interface.
 * Semantics, rules and errors: SPEC-FAMILY.md section 4. */
#ifndef OPENNSA_ACLNNOP_ACLNN_NSA_COMPRESS_ATTENTION_INFER_H_
#define OPENNSA_ACLNNOP_ACLNN_NSA_COMPRESS_ATTENTION_INFER_H_

#include "aclnn/aclnn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Validates every argument, then returns the workspace the launch needs and an executor for it.
 * The attribute order differs from torch_npu's npu_nsa_compress_attention_infer; this is CANN's. */
ACL_FUNC_VISIBILITY aclnnStatus aclnnNsaCompressAttentionInferGetWorkspaceSize(
    const aclTensor* query, const aclTensor* key, const aclTensor* value, const aclTensor* attentionMaskOptional,
    const aclTensor* blockTableOptional, const aclIntArray* actualQSeqLenOptional,
    const aclIntArray* actualCmpKvSeqLenOptional, const aclIntArray* actualSelKvSeqLenOptional,
    const aclTensor* topKMaskOptional, int64_t numHeads, int64_t numKeyValueHeads, int64_t selectBlockSize,
    int64_t selectBlockCount, int64_t compressBlockSize, int64_t compressBlockStride, double scaleValue,
    char* layoutOptional, int64_t pageBlockSize, int64_t sparseMode, const aclTensor* output,
    const aclTensor* topKOutput, uint64_t* workspaceSize, aclOpExecutor** executor);

/* Runs the executor with a workspace of at least the size returned above (64-byte aligned). */
ACL_FUNC_VISIBILITY aclnnStatus aclnnNsaCompressAttentionInfer(void* workspace, uint64_t workspaceSize,
                                                               aclOpExecutor* executor, aclrtStream stream);

#ifdef __cplusplus
}
#endif

#endif /* OPENNSA_ACLNNOP_ACLNN_NSA_COMPRESS_ATTENTION_INFER_H_ */
