// aclnnNsaCompressGrad: CANN's two-phase entry points over opennsa::compress_backward (the
// parameter names, doubled "Optional" included, are CANN's generated ones).
#include "aclnn/compress_args.hpp"
#include "aclnn/convert.hpp"
#include "aclnn/executor.hpp"
#include "aclnnop/aclnn_nsa_compress_grad.h"

using namespace opennsa::capi;

extern "C" {

aclnnStatus aclnnNsaCompressGradGetWorkspaceSize(const aclTensor* outputGrad, const aclTensor* input,
                                                 const aclTensor* weight, const aclIntArray* actSeqLenOptionalOptional,
                                                 int64_t compressBlockSize, int64_t compressStride,
                                                 int64_t actSeqLenType, char* layoutOptionalOptional,
                                                 const aclTensor* inputGradOut, const aclTensor* weightGradOut,
                                                 uint64_t* workspaceSize, aclOpExecutor** executor) {
    constexpr const char* fn = "aclnnNsaCompressGradGetWorkspaceSize";
    return aclnn_call(fn, [&] {
        prepare_executor(fn, "aclnnNsaCompressGrad", workspaceSize, executor, [&](aclOpExecutor& ex) {
            require(outputGrad, "outputGrad");
            require(input, "input");
            require(weight, "weight");
            require(inputGradOut, "inputGradOut");
            require(weightGradOut, "weightGradOut");
            const opennsa::CompressParams p = to_compress_params(
                actSeqLenOptionalOptional, "actSeqLenOptionalOptional", compressBlockSize, compressStride, actSeqLenType);
            check_tnd_layout(layoutOptionalOptional, "layoutOptionalOptional");
            opennsa::CompressGradArgs a;
            a.output_grad = to_view(outputGrad, "outputGrad");
            a.input = to_view(input, "input");
            a.weight = to_view(weight, "weight");
            a.input_grad = to_view(inputGradOut, "inputGradOut");
            a.weight_grad = to_view(weightGradOut, "weightGradOut");
            check_half_dtype(a.output_grad, "outputGrad", "aclnnNsaCompressGrad");
            const std::size_t bytes = opennsa::compress_backward_workspace_bytes(a, p);
            ex.run = [a, p](std::span<std::byte> ws) { opennsa::compress_backward(a, p, ws); };
            return bytes;
        });
    });
}

aclnnStatus aclnnNsaCompressGrad(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                 aclrtStream stream) {
    return aclnn_call("aclnnNsaCompressGrad",
                      [&] { launch("aclnnNsaCompressGrad", workspace, workspaceSize, executor, stream); });
}

}  // extern "C"
