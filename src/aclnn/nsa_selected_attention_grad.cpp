// aclnnNsaSelectedAttentionGrad: CANN's two-phase entry points over opennsa::backward.
#include "aclnn/convert.hpp"
#include "aclnn/executor.hpp"
#include "aclnnop/aclnn_nsa_selected_attention_grad.h"

using namespace opennsa::capi;

extern "C" {

aclnnStatus aclnnNsaSelectedAttentionGradGetWorkspaceSize(
    const aclTensor* query, const aclTensor* key, const aclTensor* value, const aclTensor* attentionOut,
    const aclTensor* attentionOutGrad, const aclTensor* softmaxMax, const aclTensor* softmaxSum,
    const aclTensor* topkIndices, const aclIntArray* actualSeqQLenOptional, const aclIntArray* actualSeqKvLenOptional,
    const aclTensor* attenMaskOptional, double scaleValue, int64_t selectedBlockSize, int64_t selectedBlockCount,
    int64_t headNum, char* inputLayout, int64_t sparseMode, const aclTensor* dqOut, const aclTensor* dkOut,
    const aclTensor* dvOut, uint64_t* workspaceSize, aclOpExecutor** executor) {
    constexpr const char* fn = "aclnnNsaSelectedAttentionGradGetWorkspaceSize";
    return aclnn_call(fn, [&] {
        prepare_executor(fn, "aclnnNsaSelectedAttentionGrad", workspaceSize, executor, [&](aclOpExecutor& ex) {
            check_layout(inputLayout);
            opennsa::BackwardArgs a;
            a.query = to_view(query, "query");
            a.key = to_view(key, "key");
            a.value = to_view(value, "value");
            a.out = to_view(attentionOut, "attentionOut");
            a.out_grad = to_view(attentionOutGrad, "attentionOutGrad");
            a.softmax_max = to_view(softmaxMax, "softmaxMax");
            a.softmax_sum = to_view(softmaxSum, "softmaxSum");
            a.topk = to_view(topkIndices, "topkIndices");
            a.atten_mask = to_view(attenMaskOptional, "attenMaskOptional");
            a.query_grad = to_view(dqOut, "dqOut");
            a.key_grad = to_view(dkOut, "dkOut");
            a.value_grad = to_view(dvOut, "dvOut");
            const opennsa::Params p = to_select_params(scaleValue, headNum, sparseMode, selectedBlockSize,
                                                       selectedBlockCount, actualSeqQLenOptional,
                                                       actualSeqKvLenOptional);
            const std::size_t bytes = opennsa::backward_workspace_bytes(a, p);
            ex.run = [a, p](std::span<std::byte> ws) { opennsa::backward(a, p, ws); };
            return bytes;
        });
    });
}

aclnnStatus aclnnNsaSelectedAttentionGrad(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                          aclrtStream stream) {
    return aclnn_call("aclnnNsaSelectedAttentionGrad",
                      [&] { launch("aclnnNsaSelectedAttentionGrad", workspace, workspaceSize, executor, stream); });
}

}  // extern "C"
