// aclnnNsaCompress: CANN's two-phase entry points over opennsa::compress. Phase one checks the
// null pointers, the layout and the C-only dtype rule, then validates through
// compress_workspace_bytes and returns an executor; phase two runs it.
#include "aclnn/compress_args.hpp"
#include "aclnn/convert.hpp"
#include "aclnn/executor.hpp"
#include "aclnnop/aclnn_nsa_compress.h"

using namespace opennsa::capi;

extern "C" {

aclnnStatus aclnnNsaCompressGetWorkspaceSize(const aclTensor* input, const aclTensor* weight,
                                             const aclIntArray* actSeqLenOptional, char* layoutOptional,
                                             int64_t compressBlockSize, int64_t compressStride, int64_t actSeqLenType,
                                             aclTensor* output, uint64_t* workspaceSize, aclOpExecutor** executor) {
    constexpr const char* fn = "aclnnNsaCompressGetWorkspaceSize";
    return aclnn_call(fn, [&] {
        prepare_executor(fn, "aclnnNsaCompress", workspaceSize, executor, [&](aclOpExecutor& ex) {
            require(input, "input");
            require(weight, "weight");
            require(output, "output");
            const opennsa::CompressParams p = to_compress_params(actSeqLenOptional, "actSeqLenOptional",
                                                                 compressBlockSize, compressStride, actSeqLenType);
            check_tnd_layout(layoutOptional, "layoutOptional");
            opennsa::CompressArgs a;
            a.input = to_view(input, "input");
            a.weight = to_view(weight, "weight");
            a.output = to_view(output, "output");
            check_half_dtype(a.input, "input", "aclnnNsaCompress");
            const std::size_t bytes = opennsa::compress_workspace_bytes(a, p);
            ex.run = [a, p](std::span<std::byte> ws) { opennsa::compress(a, p, ws); };
            return bytes;
        });
    });
}

aclnnStatus aclnnNsaCompress(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor, aclrtStream stream) {
    return aclnn_call("aclnnNsaCompress",
                      [&] { launch("aclnnNsaCompress", workspace, workspaceSize, executor, stream); });
}

}  // extern "C"
