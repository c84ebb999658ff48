// Pins every prototype of the CANN headers to CANN's exact type (docs/spec: the prototypes of each operator page
// and select_attention.md 8): each function's address has exactly the expected pointer type. decltype does not
// odr-use the function, so this compiles (and is checked) without any definition: it covers the
// operators other engineers have not implemented yet. Built as an object library, never linked.
#include <cstdint>
#include <type_traits>

#include "acl/acl.h"
#include "aclnnop/aclnn_nsa_compress.h"
#include "aclnnop/aclnn_nsa_compress_attention.h"
#include "aclnnop/aclnn_nsa_compress_attention_infer.h"
#include "aclnnop/aclnn_nsa_compress_grad.h"
#include "aclnnop/aclnn_nsa_compress_with_cache.h"
#include "aclnnop/aclnn_nsa_select_attention_infer.h"
#include "aclnnop/aclnn_nsa_selected_attention.h"
#include "aclnnop/aclnn_nsa_selected_attention_grad.h"
#include "aclnnop/aclnn_nsa_selected_attention_infer.h"

namespace {

#define OPENNSA_PIN(function, ...)                                                                     \
    static_assert(std::is_same<decltype(&function), __VA_ARGS__>::value,                             \
                  #function " does not have CANN's prototype")

using T = const aclTensor*;    // an input (or CANN's const output) tensor
using A = const aclIntArray*;  // an optional length array
using Ws = std::uint64_t*;
using Ex = aclOpExecutor**;
// Every launch: (workspace, workspaceSize, executor, stream). A top-level const on the stream
// parameter, as some CANN prototypes write it, is not part of the function type.
using Launch = aclnnStatus (*)(void*, std::uint64_t, aclOpExecutor*, aclrtStream);

// Runtime additions (docs/spec/README.md).
OPENNSA_PIN(aclrtCreateContext, aclError (*)(aclrtContext*, std::int32_t));
OPENNSA_PIN(aclrtDestroyContext, aclError (*)(aclrtContext));
OPENNSA_PIN(aclrtSetCurrentContext, aclError (*)(aclrtContext));
OPENNSA_PIN(aclrtGetCurrentContext, aclError (*)(aclrtContext*));

// 1.1 aclnnNsaCompress (output is a non-const aclTensor*).
OPENNSA_PIN(aclnnNsaCompressGetWorkspaceSize,
            aclnnStatus (*)(T input, T weight, A actSeqLenOptional, char* layoutOptional,
                            std::int64_t compressBlockSize, std::int64_t compressStride, std::int64_t actSeqLenType,
                            aclTensor* output, Ws, Ex));
OPENNSA_PIN(aclnnNsaCompress, Launch);

// 2.1 aclnnNsaCompressGrad: inputs, attributes (layout last), outputs.
OPENNSA_PIN(aclnnNsaCompressGradGetWorkspaceSize,
            aclnnStatus (*)(T outputGrad, T input, T weight, A actSeqLenOptionalOptional,
                            std::int64_t compressBlockSize, std::int64_t compressStride, std::int64_t actSeqLenType,
                            char* layoutOptionalOptional, T inputGradOut, T weightGradOut, Ws, Ex));
OPENNSA_PIN(aclnnNsaCompressGrad, Launch);

// 3.1 aclnnNsaCompressAttention.
OPENNSA_PIN(aclnnNsaCompressAttentionGetWorkspaceSize,
            aclnnStatus (*)(T query, T key, T value, T attenMaskOptional, T topkMaskOptional,
                            A actualSeqQLenOptional, A actualCmpSeqKvLenOptional, A actualSelSeqKvLenOptional,
                            double scaleValue, std::int64_t headNum, char* inputLayout, std::int64_t sparseMode,
                            std::int64_t compressBlockSize, std::int64_t compressStride, std::int64_t selectBlockSize,
                            std::int64_t selectBlockCount, T softmaxMaxOut, T softmaxSumOut, T attentionOutOut,
                            T topkIndicesOut, Ws, Ex));
OPENNSA_PIN(aclnnNsaCompressAttention, Launch);

// 4.1 aclnnNsaCompressAttentionInfer (CANN's attribute order, not torch_npu's).
OPENNSA_PIN(aclnnNsaCompressAttentionInferGetWorkspaceSize,
            aclnnStatus (*)(T query, T key, T value, T attentionMaskOptional, T blockTableOptional,
                            A actualQSeqLenOptional, A actualCmpKvSeqLenOptional, A actualSelKvSeqLenOptional,
                            T topKMaskOptional, std::int64_t numHeads, std::int64_t numKeyValueHeads,
                            std::int64_t selectBlockSize, std::int64_t selectBlockCount,
                            std::int64_t compressBlockSize, std::int64_t compressBlockStride, double scaleValue,
                            char* layoutOptional, std::int64_t pageBlockSize, std::int64_t sparseMode, T output,
                            T topKOutput, Ws, Ex));
OPENNSA_PIN(aclnnNsaCompressAttentionInfer, Launch);

// 5.1 aclnnNsaCompressWithCache (outputCache is a non-const aclTensor*, updated in place).
OPENNSA_PIN(aclnnNsaCompressWithCacheGetWorkspaceSize,
            aclnnStatus (*)(T input, T weight, T slotMapping, A actSeqLenOptional, T blockTableOptional,
                            char* layoutOptional, std::int64_t compressBlockSize, std::int64_t compressStride,
                            std::int64_t actSeqLenType, std::int64_t pageBlockSize, aclTensor* outputCache, Ws, Ex));
OPENNSA_PIN(aclnnNsaCompressWithCache, Launch);

// 6.1 aclnnNsaSelectedAttentionInfer (also through aclnn_nsa_select_attention_infer.h).
OPENNSA_PIN(aclnnNsaSelectedAttentionInferGetWorkspaceSize,
            aclnnStatus (*)(T query, T key, T value, T topkIndices, T attenMaskOptional, T blockTableOptional,
                            A actualQSeqLenOptional, A actualKvSeqLenOptional, char* layoutOptional,
                            std::int64_t numHeads, std::int64_t numKeyValueHeads, std::int64_t selectBlockSize,
                            std::int64_t selectBlockCount, std::int64_t pageBlockSize, double scaleValue,
                            std::int64_t sparseMode, aclTensor* output, Ws, Ex));
OPENNSA_PIN(aclnnNsaSelectedAttentionInfer, Launch);

// select_attention.md 8: the two implemented operators.
OPENNSA_PIN(aclnnNsaSelectedAttentionGetWorkspaceSize,
            aclnnStatus (*)(T query, T key, T value, T topkIndices, T attenMaskOptional, A actualSeqQLenOptional,
                            A actualSeqKvLenOptional, double scaleValue, std::int64_t headNum, char* inputLayout,
                            std::int64_t sparseMode, std::int64_t selectedBlockSize, std::int64_t selectedBlockCount,
                            T softmaxMaxOut, T softmaxSumOut, T attentionOut, Ws, Ex));
OPENNSA_PIN(aclnnNsaSelectedAttention, Launch);
OPENNSA_PIN(aclnnNsaSelectedAttentionGradGetWorkspaceSize,
            aclnnStatus (*)(T query, T key, T value, T attentionOut, T attentionOutGrad, T softmaxMax,
                            T softmaxSum, T topkIndices, A actualSeqQLenOptional, A actualSeqKvLenOptional,
                            T attenMaskOptional, double scaleValue, std::int64_t selectedBlockSize,
                            std::int64_t selectedBlockCount, std::int64_t headNum, char* inputLayout,
                            std::int64_t sparseMode, T dqOut, T dkOut, T dvOut, Ws, Ex));
OPENNSA_PIN(aclnnNsaSelectedAttentionGrad, Launch);

#undef OPENNSA_PIN

}  // namespace
