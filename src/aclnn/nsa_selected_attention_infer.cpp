// aclnnNsaSelectedAttentionInfer: CANN's two-phase entry points over
// opennsa::select_attention_infer. Phase one converts and validates the metadata (through
// select_attention_infer_workspace_bytes) and returns an executor; phase two runs it (the native
// call checks the top-k indices and the block table before writing anything). Both header names
// CANN has used declare these (aclnn_nsa_selected_attention_infer.h, aclnn_nsa_select_attention_infer.h).
#include "aclnn/compress_args.hpp"
#include "aclnn/convert.hpp"
#include "aclnn/executor.hpp"
#include "aclnnop/aclnn_nsa_selected_attention_infer.h"

using namespace opennsa::capi;

extern "C" {

aclnnStatus aclnnNsaSelectedAttentionInferGetWorkspaceSize(
    const aclTensor* query, const aclTensor* key, const aclTensor* value, const aclTensor* topkIndices,
    const aclTensor* attenMaskOptional, const aclTensor* blockTableOptional, const aclIntArray* actualQSeqLenOptional,
    const aclIntArray* actualKvSeqLenOptional, char* layoutOptional, int64_t numHeads, int64_t numKeyValueHeads,
    int64_t selectBlockSize, int64_t selectBlockCount, int64_t pageBlockSize, double scaleValue, int64_t sparseMode,
    aclTensor* output, uint64_t* workspaceSize, aclOpExecutor** executor) {
    constexpr const char* fn = "aclnnNsaSelectedAttentionInferGetWorkspaceSize";
    (void)attenMaskOptional;  // reserved: never read (as CANN)
    (void)sparseMode;         // reserved: accepted and ignored (as CANN)
    return aclnn_call(fn, [&] {
        prepare_executor(fn, "aclnnNsaSelectedAttentionInfer", workspaceSize, executor, [&](aclOpExecutor& ex) {
            require(layoutOptional, "layoutOptional");
            require(actualKvSeqLenOptional, "actualKvSeqLenOptional");
            opennsa::SelectAttentionInferArgs a;
            a.query = to_view(query, "query");
            a.key = to_view(key, "key");
            a.value = to_view(value, "value");
            a.topk = to_view(topkIndices, "topkIndices");
            a.block_table = to_view(blockTableOptional, "blockTableOptional");
            a.out = to_view(output, "output");
            check_half_dtype(a.query, "query", "aclnnNsaSelectedAttentionInfer");
            opennsa::SelectAttentionInferParams p;
            p.scale = scaleValue;
            p.head_num = numHeads;
            p.key_value_head_num = numKeyValueHeads;
            p.select_block_size = selectBlockSize;
            p.select_block_count = selectBlockCount;
            p.page_block_size = pageBlockSize;
            p.layout = layoutOptional;
            p.actual_q_seq_len = to_seqlens(actualQSeqLenOptional);
            p.actual_kv_seq_len = to_seqlens(actualKvSeqLenOptional);
            const std::size_t bytes = opennsa::select_attention_infer_workspace_bytes(a, p);
            ex.run = [a, p](std::span<std::byte> ws) { opennsa::select_attention_infer(a, p, ws); };
            return bytes;
        });
    });
}

aclnnStatus aclnnNsaSelectedAttentionInfer(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                           const aclrtStream stream) {
    return aclnn_call("aclnnNsaSelectedAttentionInfer", [&] {
        launch("aclnnNsaSelectedAttentionInfer", workspace, workspaceSize, executor, stream);
    });
}

}  // extern "C"
