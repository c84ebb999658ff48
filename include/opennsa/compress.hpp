// OpenNSA native C++ API: compression of K or V, one weighted window per stride, and its backward
// (docs/spec/compress.md; CANN: aclnnNsaCompress, aclnnNsaCompressGrad; torch_npu:
// npu_nsa_compress, npu_nsa_compress_grad).
//
//   output[o_b + c, h, e] = sum_{r < l} weight[r, h] * input[s_b + c*d + r, h, e]
//   for every batch b, compressed token c < C(S_b) = S_b >= l ? (S_b - l) / d + 1 : 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "opennsa/core.hpp"

namespace opennsa {

inline constexpr std::int64_t kSeqLenCumulative = 0;  // actSeqLenType 0: cumulative ends, no leading 0
inline constexpr std::int64_t kSeqLenPerBatch = 1;    // actSeqLenType 1: per-batch lengths

struct CompressParams {
    std::int64_t block_size = 32;  // l, compressBlockSize: tokens per window
    std::int64_t stride = 16;      // d, compressStride: 1 <= d <= l
    // actSeqLenOptional: the batches of the input (required, at least one entry), read as
    // cumulative ends (kSeqLenCumulative) or per-batch lengths (kSeqLenPerBatch).
    std::vector<std::int64_t> seq_lens;
    std::int64_t seq_len_type = kSeqLenCumulative;
};

// input [T, N, D] and output [Tc, N, D] (Tc = sum_b C(S_b), batch 0's rows first) share one dtype:
// f16, bf16, f32 (or f64, for gradient checks); weight [l, N] too.
struct CompressArgs {
    TensorView input, weight;
    TensorView output;  // output
};

// output_grad [Tc, N, D], input [T, N, D], weight [l, N] -> input_grad [T, N, D] (rows no window
// covers are 0), weight_grad [l, N]. One dtype for all.
struct CompressGradArgs {
    TensorView output_grad, input, weight;
    TensorView input_grad, weight_grad;  // outputs
};

// Tc for the given batches: the row count `output` must have. Validates the parameters.
OPENNSA_API std::int64_t compressed_token_count(std::int64_t T, const CompressParams& params);
// The cumulative compressed lengths per batch ([o_1, o_2, ...], no leading 0): what the
// compressed attention takes as actualCmpSeqKvLen.
OPENNSA_API std::vector<std::int64_t> compressed_seq_lens(std::int64_t T, const CompressParams& params);

OPENNSA_API void compress(const CompressArgs& args, const CompressParams& params);
OPENNSA_API void compress_backward(const CompressGradArgs& args, const CompressParams& params);

// Caller-provided scratch, as for the selected attention (select_attention.hpp).
OPENNSA_API std::size_t compress_workspace_bytes(const CompressArgs& args, const CompressParams& params);
OPENNSA_API std::size_t compress_backward_workspace_bytes(const CompressGradArgs& args, const CompressParams& params);
OPENNSA_API void compress(const CompressArgs& args, const CompressParams& params, std::span<std::byte> workspace);
OPENNSA_API void compress_backward(const CompressGradArgs& args, const CompressParams& params,
                                   std::span<std::byte> workspace);

}  // namespace opennsa
