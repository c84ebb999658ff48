// aclnnNsaCompressAttentionInfer: CANN's two-phase entry points over
// opennsa::compress_attention_infer. Phase one converts and validates everything that does not
// depend on tensor contents (through compress_attention_infer_workspace_bytes) and returns an
// executor; phase two runs it, which checks the block-table entries before writing anything.
#include "aclnn/compress_args.hpp"
#include "aclnn/convert.hpp"
#include "aclnn/executor.hpp"
#include "aclnnop/aclnn_nsa_compress_attention_infer.h"

using namespace opennsa::capi;

extern "C" {

aclnnStatus aclnnNsaCompressAttentionInferGetWorkspaceSize(
    const aclTensor* query, const aclTensor* key, const aclTensor* value, const aclTensor* attentionMaskOptional,
    const aclTensor* blockTableOptional, const aclIntArray* actualQSeqLenOptional,
    const aclIntArray* actualCmpKvSeqLenOptional, const aclIntArray* actualSelKvSeqLenOptional,
    const aclTensor* topKMaskOptional, int64_t numHeads, int64_t numKeyValueHeads, int64_t selectBlockSize,
    int64_t selectBlockCount, int64_t compressBlockSize, int64_t compressBlockStride, double scaleValue,
    char* layoutOptional, int64_t pageBlockSize, int64_t sparseMode, const aclTensor* output,
    const aclTensor* topKOutput, uint64_t* workspaceSize, aclOpExecutor** executor) {
    constexpr const char* fn = "aclnnNsaCompressAttentionInferGetWorkspaceSize";
    return aclnn_call(fn, [&] {
        prepare_executor(fn, "aclnnNsaCompressAttentionInfer", workspaceSize, executor, [&](aclOpExecutor& ex) {
            require(query, "query");
            require(key, "key");
            require(value, "value");
            require(blockTableOptional, "blockTableOptional");
            require(actualCmpKvSeqLenOptional, "actualCmpKvSeqLenOptional");
            require(layoutOptional, "layoutOptional");
            require(output, "output");
            require(topKOutput, "topKOutput");
            (void)topKMaskOptional;  // reserved, never read (its view is not even formed)
            opennsa::CompressAttentionInferArgs a;
            a.query = to_view(query, "query");
            a.key = to_view(key, "key");
            a.value = to_view(value, "value");
            a.atten_mask = to_view(attentionMaskOptional, "attentionMaskOptional");
            a.block_table = to_view(blockTableOptional, "blockTableOptional");
            a.out = to_view(output, "output");
            a.topk = to_view(topKOutput, "topKOutput");
            check_half_dtype(a.query, "query", "aclnnNsaCompressAttentionInfer");
            opennsa::CompressAttentionInferParams p;
            p.scale = scaleValue;
            p.head_num = numHeads;
            p.key_value_head_num = numKeyValueHeads;
            p.select_block_size = selectBlockSize;
            p.select_block_count = selectBlockCount;
            p.compress_block_size = compressBlockSize;
            p.compress_stride = compressBlockStride;
            p.page_block_size = pageBlockSize;
            p.layout = layoutOptional;
            p.sparse_mode = sparseMode;
            p.q_seq_lens = to_seqlens(actualQSeqLenOptional);
            p.cmp_kv_seq_lens = to_seqlens(actualCmpKvSeqLenOptional);
            p.sel_kv_seq_lens = to_seqlens(actualSelKvSeqLenOptional);
            const std::size_t bytes = opennsa::compress_attention_infer_workspace_bytes(a, p);
            ex.run = [a, p](std::span<std::byte> ws) { opennsa::compress_attention_infer(a, p, ws); };
            return bytes;
        });
    });
}

aclnnStatus aclnnNsaCompressAttentionInfer(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                           aclrtStream stream) {
    return aclnn_call("aclnnNsaCompressAttentionInfer", [&] {
        launch("aclnnNsaCompressAttentionInfer", workspace, workspaceSize, executor, stream);
    });
}

}  // extern "C"
