// aclnnNsaCompressAttention: CANN's two-phase entry points over opennsa::compress_attention. Phase
// one converts and validates (through compress_attention_workspace_bytes) and returns an
// executor; phase two runs it. The softmax statistics are written in CANN's head-major layout.
// There is no C entry point for the backward (docs/spec/compress_attention.md section 8).
#include "aclnn/convert.hpp"
#include "aclnn/executor.hpp"
#include "aclnnop/aclnn_nsa_compress_attention.h"

using namespace opennsa::capi;

extern "C" {

aclnnStatus aclnnNsaCompressAttentionGetWorkspaceSize(
    const aclTensor* query, const aclTensor* key, const aclTensor* value, const aclTensor* attenMaskOptional,
    const aclTensor* topkMaskOptional, const aclIntArray* actualSeqQLenOptional,
    const aclIntArray* actualCmpSeqKvLenOptional, const aclIntArray* actualSelSeqKvLenOptional, double scaleValue,
    int64_t headNum, char* inputLayout, int64_t sparseMode, int64_t compressBlockSize, int64_t compressStride,
    int64_t selectBlockSize, int64_t selectBlockCount, const aclTensor* softmaxMaxOut,
    const aclTensor* softmaxSumOut, const aclTensor* attentionOutOut, const aclTensor* topkIndicesOut,
    uint64_t* workspaceSize, aclOpExecutor** executor) {
    constexpr const char* fn = "aclnnNsaCompressAttentionGetWorkspaceSize";
    return aclnn_call(fn, [&] {
        prepare_executor(fn, "aclnnNsaCompressAttention", workspaceSize, executor, [&](aclOpExecutor& ex) {
            check_layout(inputLayout);
            opennsa::CompressAttentionArgs a;
            a.query = to_view(query, "query");
            a.key = to_view(key, "key");
            a.value = to_view(value, "value");
            a.atten_mask = to_view(attenMaskOptional, "attenMaskOptional");
            a.topk_mask = to_view(topkMaskOptional, "topkMaskOptional");
            a.softmax_max = to_view(softmaxMaxOut, "softmaxMaxOut");
            a.softmax_sum = to_view(softmaxSumOut, "softmaxSumOut");
            a.out = to_view(attentionOutOut, "attentionOutOut");
            a.topk = to_view(topkIndicesOut, "topkIndicesOut");
            opennsa::CompressAttentionParams p;
            p.scale = scaleValue;
            p.head_num = headNum;
            p.sparse_mode = sparseMode;
            p.compress_block_size = compressBlockSize;
            p.compress_stride = compressStride;
            p.select_block_size = selectBlockSize;
            p.select_block_count = selectBlockCount;
            p.cu_seqlens_q = to_seqlens(actualSeqQLenOptional);
            p.cu_seqlens_cmp_kv = to_seqlens(actualCmpSeqKvLenOptional);
            p.cu_seqlens_sel_kv = to_seqlens(actualSelSeqKvLenOptional);
            p.stats_token_major = false;  // CANN's layout
            const std::size_t bytes = opennsa::compress_attention_workspace_bytes(a, p);
            ex.run = [a, p](std::span<std::byte> ws) { opennsa::compress_attention(a, p, ws); };
            return bytes;
        });
    });
}

aclnnStatus aclnnNsaCompressAttention(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                      const aclrtStream stream) {
    return aclnn_call("aclnnNsaCompressAttention",
                      [&] { launch("aclnnNsaCompressAttention", workspace, workspaceSize, executor, stream); });
}

}  // extern "C"
