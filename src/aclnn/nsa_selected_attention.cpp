// aclnnNsaSelectedAttention[Grad]: CANN's two-phase entry points over the native API. Phase one
// converts and validates (through the native *_workspace_bytes) and returns an executor; phase two
// runs it (the native call checks the topk values before writing anything).
#include <memory>

#include "aclnn/convert.hpp"
#include "aclnn/executor.hpp"
#include "aclnn/status.hpp"
#include "aclnnop/aclnn_nsa_selected_attention.h"
#include "aclnnop/aclnn_nsa_selected_attention_grad.h"

namespace opennsa::capi {
namespace {

Params to_params(double scaleValue, std::int64_t headNum, std::int64_t sparseMode, std::int64_t selectedBlockSize,
                 std::int64_t selectedBlockCount, const aclIntArray* actualSeqQLenOptional,
                 const aclIntArray* actualSeqKvLenOptional) {
    Params p;
    p.scale = scaleValue;
    p.head_num = headNum;
    p.sparse_mode = sparseMode;
    p.block_size = selectedBlockSize;
    p.block_count = selectedBlockCount;
    p.cu_seqlens_q = to_seqlens(actualSeqQLenOptional);
    p.cu_seqlens_kv = to_seqlens(actualSeqKvLenOptional);
    return p;
}

// Phase one, shared by both operators: convert(ex) fills the executor's arguments and returns the
// native workspace size (whose computation validates them).
template <class Convert>
aclnnStatus prepare(const char* fn, const char* inputLayout, std::uint64_t* workspaceSize,
                    aclOpExecutor** executor, Convert&& convert) {
    return aclnn_call(fn, [&] {
        require(workspaceSize, "workspaceSize");
        require(executor, "executor");
        check_layout(inputLayout);
        auto ex = std::make_shared<aclOpExecutor>();
        ex->workspace_bytes = convert(*ex);
        *workspaceSize = ex->workspace_bytes;
        *executor = register_executor(std::move(ex));
    });
}

}  // namespace
}  // namespace opennsa::capi

using namespace opennsa::capi;

extern "C" {

aclnnStatus aclnnNsaSelectedAttentionGetWorkspaceSize(
    const aclTensor* query, const aclTensor* key, const aclTensor* value, const aclTensor* topkIndices,
    const aclTensor* attenMaskOptional, const aclIntArray* actualSeqQLenOptional,
    const aclIntArray* actualSeqKvLenOptional, double scaleValue, int64_t headNum, char* inputLayout,
    int64_t sparseMode, int64_t selectedBlockSize, int64_t selectedBlockCount, const aclTensor* softmaxMaxOut,
    const aclTensor* softmaxSumOut, const aclTensor* attentionOut, uint64_t* workspaceSize,
    aclOpExecutor** executor) {
    return prepare("aclnnNsaSelectedAttentionGetWorkspaceSize", inputLayout, workspaceSize, executor,
                   [&](aclOpExecutor& ex) {
        opennsa::ForwardArgs& a = ex.forward_args;
        a.query = to_view(query, "query");
        a.key = to_view(key, "key");
        a.value = to_view(value, "value");
        a.topk = to_view(topkIndices, "topkIndices");
        a.atten_mask = to_view(attenMaskOptional, "attenMaskOptional");
        a.softmax_max = to_view(softmaxMaxOut, "softmaxMaxOut");
        a.softmax_sum = to_view(softmaxSumOut, "softmaxSumOut");
        a.out = to_view(attentionOut, "attentionOut");
        ex.params = to_params(scaleValue, headNum, sparseMode, selectedBlockSize, selectedBlockCount,
                               actualSeqQLenOptional, actualSeqKvLenOptional);
        return opennsa::forward_workspace_bytes(a, ex.params);
    });
}

aclnnStatus aclnnNsaSelectedAttention(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                      aclrtStream stream) {
    return aclnn_call("aclnnNsaSelectedAttention",
                      [&] { launch(false, workspace, workspaceSize, executor, stream); });
}

aclnnStatus aclnnNsaSelectedAttentionGradGetWorkspaceSize(
    const aclTensor* query, const aclTensor* key, const aclTensor* value, const aclTensor* attentionOut,
    const aclTensor* attentionOutGrad, const aclTensor* softmaxMax, const aclTensor* softmaxSum,
    const aclTensor* topkIndices, const aclIntArray* actualSeqQLenOptional, const aclIntArray* actualSeqKvLenOptional,
    const aclTensor* attenMaskOptional, double scaleValue, int64_t selectedBlockSize, int64_t selectedBlockCount,
    int64_t headNum, char* inputLayout, int64_t sparseMode, const aclTensor* dqOut, const aclTensor* dkOut,
    const aclTensor* dvOut, uint64_t* workspaceSize, aclOpExecutor** executor) {
    return prepare("aclnnNsaSelectedAttentionGradGetWorkspaceSize", inputLayout, workspaceSize, executor,
                   [&](aclOpExecutor& ex) {
        ex.backward = true;
        opennsa::BackwardArgs& a = ex.backward_args;
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
        ex.params = to_params(scaleValue, headNum, sparseMode, selectedBlockSize, selectedBlockCount,
                               actualSeqQLenOptional, actualSeqKvLenOptional);
        return opennsa::backward_workspace_bytes(a, ex.params);
    });
}

aclnnStatus aclnnNsaSelectedAttentionGrad(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                          aclrtStream stream) {
    return aclnn_call("aclnnNsaSelectedAttentionGrad",
                      [&] { launch(true, workspace, workspaceSize, executor, stream); });
}

}  // extern "C"
