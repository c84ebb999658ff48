/* OpenNSA: Native Sparse Attention, decoding: compress each batch's newest complete window into a
 * cache (aclnnNsaCompressWithCache), with CANN's two-phase interface. Semantics, rules and errors:
 * SPEC-FAMILY.md section 5. outputCache is updated in place: only triggered batches' slots change. */
#ifndef OPENNSA_ACLNNOP_ACLNN_NSA_COMPRESS_WITH_CACHE_H_
#define OPENNSA_ACLNNOP_ACLNN_NSA_COMPRESS_WITH_CACHE_H_

#include "aclnn/aclnn_base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Validates every argument, then returns the workspace the launch needs and an executor for it. */
ACL_FUNC_VISIBILITY aclnnStatus aclnnNsaCompressWithCacheGetWorkspaceSize(
    const aclTensor* input, const aclTensor* weight, const aclTensor* slotMapping,
    const aclIntArray* actSeqLenOptional, const aclTensor* blockTableOptional, char* layoutOptional,
    int64_t compressBlockSize, int64_t compressStride, int64_t actSeqLenType, int64_t pageBlockSize,
    aclTensor* outputCache, uint64_t* workspaceSize, aclOpExecutor** executor);

/* Runs the executor with a workspace of at least the size returned above (64-byte aligned). */
ACL_FUNC_VISIBILITY aclnnStatus aclnnNsaCompressWithCache(void* workspace, uint64_t workspaceSize,
                                                          aclOpExecutor* executor, aclrtStream stream);

#ifdef __cplusplus
}
#endif

#endif /* OPENNSA_ACLNNOP_ACLNN_NSA_COMPRESS_WITH_CACHE_H_ */
