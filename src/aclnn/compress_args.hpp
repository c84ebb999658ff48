// C arguments of aclnnNsaCompress and aclnnNsaCompressGrad -> native arguments: what both entry
// points check before the native validation (docs/spec/compress.md 1.5 / 2.5). Only conversion
// and the C-only rules live here; every operator rule stays in src/ops/compress/problem.
#pragma once

#include <cstdint>
#include <cstring>

#include "aclnn/acl_meta.h"
#include "aclnn/convert.hpp"
#include "aclnn/status.hpp"
#include "opennsa/compress.hpp"

namespace opennsa::capi {

// The length array is required (CANN dereferences it; a null one is 161001 here, as every null
// pointer). Its contents are checked by the native validation.
inline CompressParams to_compress_params(const aclIntArray* actSeqLen, const char* name,
                                         std::int64_t compressBlockSize, std::int64_t compressStride,
                                         std::int64_t actSeqLenType) {
    if (actSeqLen == nullptr)
        raise(ErrorCode::null_pointer, name,
              " is a null pointer (required: the batches' cumulative ends, actSeqLenType 0, or lengths, 1)");
    CompressParams p;
    p.block_size = compressBlockSize;
    p.stride = compressStride;
    p.seq_len_type = actSeqLenType;
    p.seq_lens = *to_seqlens(actSeqLen);
    return p;
}

// The layout attribute must be "TND". It is an attribute, not a tensor: a null one is not "TND"
// and is rejected as an invalid value (161002), as CANN does; torch_npu always passes "TND".
inline void check_tnd_layout(const char* layout, const char* name) {
    if (layout == nullptr) raise(ErrorCode::invalid_argument, name, " is null; the only layout supported is \"TND\"");
    if (std::strcmp(layout, "TND") != 0)
        raise(ErrorCode::invalid_argument, name, " = \"", layout, "\" is not supported (only \"TND\")");
}

// Through the C API the data tensors are fp16 or bf16 (the native API also takes fp32 and fp64).
// The first data tensor is checked here; the native validation makes the others equal to it.
inline void check_half_dtype(const TensorView& v, const char* name, const char* op) {
    if (v.rank != 0 && v.dtype != DType::f16 && v.dtype != DType::bf16)
        raise(ErrorCode::invalid_argument, name, ": dtype ", dtype_name(v.dtype), " is not supported by ", op,
              " (expected ACL_FLOAT16 or ACL_BF16)");
}

}  // namespace opennsa::capi
