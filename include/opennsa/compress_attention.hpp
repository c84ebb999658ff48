// OpenNSA native C++ API: attention over compressed K/V plus the top-k block selection that feeds
// the selected attention, and its backward (docs/spec/compress_attention.md; CANN:
// aclnnNsaCompressAttention; torch_npu: npu_nsa_compress_attention and its autograd).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "opennsa/core.hpp"

namespace opennsa {

// sparseMode 0 and 1 apply atten_mask when one is given (CANN); 2 is the NSA causal rule built in
// (compressed token j visible to query position i iff j*d + l - 1 <= i, per batch), no mask read.
inline constexpr std::int64_t kCompressSparseModeMask = 1;
inline constexpr std::int64_t kCompressSparseModeCausal = 2;

struct CompressAttentionParams {
    double scale = 1.0;                  // scaleValue
    std::int64_t head_num = 0;           // N1, must equal query.shape[1]
    std::int64_t compress_block_size = 32;  // l
    std::int64_t compress_stride = 16;      // d
    std::int64_t select_block_size = 64;    // l' (a multiple of d, >= l)
    std::int64_t select_block_count = 16;   // k, must equal topk.shape[2]
    std::int64_t sparse_mode = kCompressSparseModeMask;
    // Cumulative ends without a leading zero: query tokens and compressed key tokens per batch,
    // both or neither (neither: one batch). The selection-block counts are accepted and ignored,
    // as in CANN.
    std::optional<std::vector<std::int64_t>> cu_seqlens_q;
    std::optional<std::vector<std::int64_t>> cu_seqlens_cmp_kv;
    std::optional<std::vector<std::int64_t>> cu_seqlens_sel_kv;
    // softmax_max / softmax_sum [T1, N1, 8] are stored as CANN stores them: batch by batch,
    // head-major inside a batch (flat row qs_b * N1 + h * S1_b + i). true: token-major, as the
    // selected attention stores them (flat row t * N1 + h).
    bool stats_token_major = false;
};

// query [T1, N1, Dk], key [T2, N2, Dk], value [T2, N2, Dv] (compressed K and V), out [T1, N1, Dv]:
// one dtype (f16, bf16, f32, or f64 for gradient checks). topk [T1, N2, k] int32; softmax_max,
// softmax_sum [T1, N1, 8] fp32. atten_mask [>= maxS1, >= maxC] and topk_mask [>= maxS1, >= maxNS]
// are optional 2-D bool/uint8 (nonzero = masked / forced).
struct CompressAttentionArgs {
    TensorView query, key, value;
    TensorView atten_mask, topk_mask;  // optional
    TensorView out, topk, softmax_max, softmax_sum;  // outputs
};

// The backward of `out` given out_grad and the forward's out and statistics (topk and the
// statistics carry no gradient).
struct CompressAttentionGradArgs {
    TensorView query, key, value, out, out_grad, softmax_max, softmax_sum;
    TensorView atten_mask;  // optional, as in the forward
    TensorView query_grad, key_grad, value_grad;  // outputs
};

OPENNSA_API void compress_attention(const CompressAttentionArgs& args, const CompressAttentionParams& params);
OPENNSA_API void compress_attention_backward(const CompressAttentionGradArgs& args,
                                             const CompressAttentionParams& params);

// Caller-provided scratch, as for the selected attention (select_attention.hpp).
OPENNSA_API std::size_t compress_attention_workspace_bytes(const CompressAttentionArgs& args,
                                                           const CompressAttentionParams& params);
OPENNSA_API std::size_t compress_attention_backward_workspace_bytes(const CompressAttentionGradArgs& args,
                                                                    const CompressAttentionParams& params);
OPENNSA_API void compress_attention(const CompressAttentionArgs& args, const CompressAttentionParams& params,
                                    std::span<std::byte> workspace);
OPENNSA_API void compress_attention_backward(const CompressAttentionGradArgs& args,
                                             const CompressAttentionParams& params, std::span<std::byte> workspace);

}  // namespace opennsa
