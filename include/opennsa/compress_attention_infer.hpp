// OpenNSA native C++ API: one decoding step of the compressed attention -- attention of the step's
// query tokens over a paged compressed K/V cache, plus the top-k selection blocks
// (docs/spec/decoding.md section 2; CANN: aclnnNsaCompressAttentionInfer; torch_npu:
// npu_nsa_compress_attention_infer). Not differentiable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "opennsa/core.hpp"

namespace opennsa {

struct CompressAttentionInferParams {
    double scale = 1.0;                    // scaleValue
    std::int64_t head_num = 0;             // N1, must equal the query's head count
    std::int64_t key_value_head_num = 0;   // N2
    std::int64_t select_block_size = 64;   // l' (a multiple of d, >= l)
    std::int64_t select_block_count = 16;  // k, the topk output's last dimension
    std::int64_t compress_block_size = 32; // l
    std::int64_t compress_stride = 16;     // d
    std::int64_t page_block_size = 128;    // P, the page size of key and value
    std::string layout = "TND";            // "TND" or "BSND"
    std::int64_t sparse_mode = 0;          // accepted and ignored, as in CANN
    // Per-batch lengths (not cumulative), B entries each (B = block_table.shape[0]):
    std::optional<std::vector<std::int64_t>> q_seq_lens;        // Q_b >= 1; absent: all 1
    std::optional<std::vector<std::int64_t>> cmp_kv_seq_lens;   // C_b >= 0; required
    std::optional<std::vector<std::int64_t>> sel_kv_seq_lens;   // raw lengths L_b (the multi-token rule)
};

// query: TND [T, N1, Dk] (T = sum_b Q_b) or BSND [B, Q, N1, Dk] (Q >= max_b Q_b); key
// [numBlocks, P, N2*Dk] and value [numBlocks, P, N2*Dv] (or [numBlocks, P, N2, D]): the paged
// compressed cache; one dtype for query, key, value and out (f16, bf16; the native API also takes
// f32 and f64). block_table [B, maxBlocks] int32: compressed token j of batch b is row j % P of
// page block_table[b][j / P]. out as query with Dv; topk TND [T, N2, k] / BSND [B, Q, N2, k]
// int32, block indices relative to the sequence, -1 for an empty slot. atten_mask: any bool /
// uint8 tensor, contents never read; given, it turns on the multi-token (causal) rule. topk_mask:
// reserved, never read.
struct CompressAttentionInferArgs {
    TensorView query, key, value;
    TensorView atten_mask, block_table, topk_mask;  // atten_mask and topk_mask optional
    TensorView out, topk;                           // outputs
};

// Validates everything (block-table entries included), then writes out and topk.
OPENNSA_API void compress_attention_infer(const CompressAttentionInferArgs& args,
                                          const CompressAttentionInferParams& params);

// Caller-provided scratch, as for the selected attention (select_attention.hpp). The size depends
// on no tensor's contents: the block table is read by the call, not by the sizing.
OPENNSA_API std::size_t compress_attention_infer_workspace_bytes(const CompressAttentionInferArgs& args,
                                                                 const CompressAttentionInferParams& params);
OPENNSA_API void compress_attention_infer(const CompressAttentionInferArgs& args,
                                          const CompressAttentionInferParams& params,
                                          std::span<std::byte> workspace);

}  // namespace opennsa
