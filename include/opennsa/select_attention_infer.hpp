// OpenNSA native C++ API: the decoding selected attention on a paged KV cache
// (docs/spec/decoding.md section 3; CANN: aclnnNsaSelectedAttentionInfer; torch_npu:
// npu_nsa_select_attention_infer). Each query token attends to the raw keys of the blocks its
// top-k slots name, read from the cache through the block table.
//
//   opennsa::SelectAttentionInferParams p;
//   p.scale = 1.0 / std::sqrt(192.0); p.head_num = 64; p.key_value_head_num = 4;
//   p.select_block_size = 64; p.select_block_count = 16; p.page_block_size = 128;
//   p.actual_kv_seq_len = std::vector<std::int64_t>{32768, 1000};   // L_b, after the new token
//   opennsa::select_attention_infer({.query = q, .key = k_cache, .value = v_cache, .topk = idx,
//                                    .block_table = bt, .out = o}, p);
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "opennsa/core.hpp"

namespace opennsa {

struct SelectAttentionInferParams {
    double scale = 1.0;                     // scaleValue
    std::int64_t head_num = 0;              // N1 (numHeads)
    std::int64_t key_value_head_num = 0;    // N2 (numKeyValueHeads)
    std::int64_t select_block_size = 64;    // l'
    std::int64_t select_block_count = 16;   // k, must equal topk's last dimension
    std::int64_t page_block_size = 128;     // P, must equal the page size of key and value
    std::string layout = "BSND";            // "BSND", "BSH" or "TND"
    // Per-batch lengths (not cumulative): query tokens Q_b of this step (absent: 1 each) and
    // cached tokens L_b including them (required). B = block_table.shape[0] entries each.
    std::optional<std::vector<std::int64_t>> actual_q_seq_len;
    std::optional<std::vector<std::int64_t>> actual_kv_seq_len;
};

// Shapes by layout (query, key, value, out share one dtype: f16, bf16, f32, or f64 for checks):
//   BSND: query [B, Q, N1, Dk], out [B, Q, N1, Dv], topk [B, Q, N2, k] (or [B, N2, k] when Q = 1)
//   BSH:  query [B, Q, N1*Dk],  out [B, Q, N1*Dv],  topk as BSND
//   TND:  query [T, N1, Dk],    out [T, N1, Dv],    topk [T, N2, k], T = sum of Q_b
// key [numBlocks, P, N2, Dk] or [numBlocks, P, N2*Dk], value likewise with Dv (Dv <= Dk);
// topk and block_table [B, maxBlocks] int32. Rows s >= Q_b of BSND / BSH get zeros.
struct SelectAttentionInferArgs {
    TensorView query, key, value, topk, block_table;
    TensorView atten_mask;  // optional, never read (reserved, as in CANN)
    TensorView out;         // output
};

// out <- attention of each query token over the cached keys of its selected blocks. Everything
// (shapes, lengths, top-k indices, block-table entries) is checked before out is written.
OPENNSA_API void select_attention_infer(const SelectAttentionInferArgs& args, const SelectAttentionInferParams& params);

// Caller-provided scratch, as for the other operators: used when it holds at least
// select_attention_infer_workspace_bytes(...) bytes and starts at a 64-byte boundary. The size
// checks the metadata only (not the top-k or block-table contents), as the C API's first phase.
OPENNSA_API std::size_t select_attention_infer_workspace_bytes(const SelectAttentionInferArgs& args,
                                                               const SelectAttentionInferParams& params);
OPENNSA_API void select_attention_infer(const SelectAttentionInferArgs& args, const SelectAttentionInferParams& params,
                                        std::span<std::byte> workspace);

}  // namespace opennsa
