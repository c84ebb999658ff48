// aclnnNsaSelectedAttention: CANN's two-phase entry points over opennsa::forward. Phase one
// converts and validates (through forward_workspace_bytes) and returns an executor; phase two
// runs it (the native call checks the topk values before writing anything).
#include "aclnn/convert.hpp"
#include "aclnn/executor.hpp"
#include "aclnnop/aclnn_nsa_selected_attention.h"

using namespace opennsa::capi;

extern "C" {

aclnnStatus aclnnNsaSelectedAttentionGetWorkspaceSize(
    const aclTensor* query, const aclTensor* key, const aclTensor* value, const aclTensor* topkIndices,
    const aclTensor* attenMaskOptional, const aclIntArray* actualSeqQLenOptional,
    const aclIntArray* actualSeqKvLenOptional, double scaleValue, int64_t headNum, char* inputLayout,
    int64_t sparseMode, int64_t selectedBlockSize, int64_t selectedBlockCount, const aclTensor* softmaxMaxOut,
    const aclTensor* softmaxSumOut, const aclTensor* attentionOut, uint64_t* workspaceSize,
    aclOpExecutor** executor) {
    constexpr const char* fn = "aclnnNsaSelectedAttentionGetWorkspaceSize";
    return aclnn_call(fn, [&] {
        prepare_executor(fn, "aclnnNsaSelectedAttention", workspaceSize, executor, [&](aclOpExecutor& ex) {
            check_layout(inputLayout);
            opennsa::ForwardArgs a;
            a.query = to_view(query, "query");
            a.key = to_view(key, "key");
            a.value = to_view(value, "value");
            a.topk = to_view(topkIndices, "topkIndices");
            a.atten_mask = to_view(attenMaskOptional, "attenMaskOptional");
            a.softmax_max = to_view(softmaxMaxOut, "softmaxMaxOut");
            a.softmax_sum = to_view(softmaxSumOut, "softmaxSumOut");
            a.out = to_view(attentionOut, "attentionOut");
            const opennsa::Params p = to_select_params(scaleValue, headNum, sparseMode, selectedBlockSize,
                                                       selectedBlockCount, actualSeqQLenOptional,
                                                       actualSeqKvLenOptional);
            const std::size_t bytes = opennsa::forward_workspace_bytes(a, p);
            ex.run = [a, p](std::span<std::byte> ws) { opennsa::forward(a, p, ws); };
            return bytes;
        });
    });
}

aclnnStatus aclnnNsaSelectedAttention(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                      aclrtStream stream) {
    return aclnn_call("aclnnNsaSelectedAttention",
                      [&] { launch("aclnnNsaSelectedAttention", workspace, workspaceSize, executor, stream); });
}

}  // extern "C"
