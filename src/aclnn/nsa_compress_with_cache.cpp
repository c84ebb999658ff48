// aclnnNsaCompressWithCache: CANN's two-phase entry points over opennsa::compress_with_cache.
// Phase one checks the null pointers and the C-only dtype rule, then validates shapes, dtypes,
// attributes and lengths through compress_with_cache_workspace_bytes and returns an executor;
// phase two runs it, which checks the slot and block-table values before writing anything.
// layoutOptional is not read: the input is always paged (docs/spec/decoding.md 1.2).
#include "aclnn/compress_args.hpp"
#include "aclnn/convert.hpp"
#include "aclnn/executor.hpp"
#include "aclnnop/aclnn_nsa_compress_with_cache.h"

using namespace opennsa::capi;

extern "C" {

aclnnStatus aclnnNsaCompressWithCacheGetWorkspaceSize(const aclTensor* input, const aclTensor* weight,
                                                      const aclTensor* slotMapping, const aclIntArray* actSeqLenOptional,
                                                      const aclTensor* blockTableOptional, char* layoutOptional,
                                                      int64_t compressBlockSize, int64_t compressStride,
                                                      int64_t actSeqLenType, int64_t pageBlockSize,
                                                      aclTensor* outputCache, uint64_t* workspaceSize,
                                                      aclOpExecutor** executor) {
    constexpr const char* fn = "aclnnNsaCompressWithCacheGetWorkspaceSize";
    (void)layoutOptional;
    return aclnn_call(fn, [&] {
        prepare_executor(fn, "aclnnNsaCompressWithCache", workspaceSize, executor, [&](aclOpExecutor& ex) {
            require(input, "input");
            require(weight, "weight");
            require(slotMapping, "slotMapping");
            require(blockTableOptional, "blockTableOptional");
            require(outputCache, "outputCache");
            const opennsa::CompressParams lens = to_compress_params(actSeqLenOptional, "actSeqLenOptional",
                                                                    compressBlockSize, compressStride, actSeqLenType);
            opennsa::CompressWithCacheParams p;
            p.block_size = lens.block_size;
            p.stride = lens.stride;
            p.seq_len_type = lens.seq_len_type;
            p.seq_lens = lens.seq_lens;
            p.page_size = pageBlockSize;
            opennsa::CompressWithCacheArgs a;
            a.input = to_view(input, "input");
            a.weight = to_view(weight, "weight");
            a.slot_mapping = to_view(slotMapping, "slotMapping");
            a.block_table = to_view(blockTableOptional, "blockTableOptional");
            a.output_cache = to_view(outputCache, "outputCache");
            check_half_dtype(a.input, "input", "aclnnNsaCompressWithCache");
            const std::size_t bytes = opennsa::compress_with_cache_workspace_bytes(a, p);
            ex.run = [a, p](std::span<std::byte> ws) { opennsa::compress_with_cache(a, p, ws); };
            return bytes;
        });
    });
}

aclnnStatus aclnnNsaCompressWithCache(void* workspace, uint64_t workspaceSize, aclOpExecutor* executor,
                                      aclrtStream stream) {
    return aclnn_call("aclnnNsaCompressWithCache",
                      [&] { launch("aclnnNsaCompressWithCache", workspace, workspaceSize, executor, stream); });
}

}  // extern "C"
