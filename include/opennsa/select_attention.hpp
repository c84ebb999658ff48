// OpenNSA native C++ API: the selected-attention branch of Native Sparse Attention, forward and
// backward (docs/spec/select_attention.md; CANN: aclnnNsaSelectedAttention[Grad]).
//
//   opennsa::Params p;
//   p.scale = 1.0 / std::sqrt(192.0); p.head_num = 16; p.block_size = 64; p.block_count = 16;
//   opennsa::forward({.query = q, .key = k, .value = v, .topk = idx,
//                     .out = o, .softmax_max = m, .softmax_sum = s}, p);
//
// Layout TND: [tokens, heads, dim].
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "opennsa/core.hpp"

namespace opennsa {

inline constexpr std::int64_t kSparseModeNone = 0;    // every selected key is visible
inline constexpr std::int64_t kSparseModeCausal = 2;  // key position p visible to query position i iff p <= i

struct Params {
    double scale = 1.0;               // scaleValue: s = scale * dot(q, k)
    std::int64_t head_num = 0;        // N1, must equal query.shape[1]
    std::int64_t block_size = 64;     // selectedBlockSize (bs)
    std::int64_t block_count = 16;    // selectedBlockCount (C), must equal topk.shape[2]
    std::int64_t sparse_mode = kSparseModeCausal;
    // Cumulative token counts without a leading zero ([s0, s0+s1, ...]); both or neither.
    // Absent: one batch of all T1 query and T2 key tokens.
    std::optional<std::vector<std::int64_t>> cu_seqlens_q;
    std::optional<std::vector<std::int64_t>> cu_seqlens_kv;
};

// Shapes: query [T1, N1, Dk], key [T2, N2, Dk], value [T2, N2, Dv], topk [T1, N2, C] int32,
// out / out_grad [T1, N1, Dv], softmax_max / softmax_sum [T1, N1, 8] fp32.
// query, key, value, out, out_grad and the gradients share one dtype: f16, bf16, f32 or f64.

struct ForwardArgs {
    TensorView query, key, value, topk;
    TensorView atten_mask;  // optional 2-D bool/uint8; validated, never read
    TensorView out, softmax_max, softmax_sum;  // outputs
};

struct BackwardArgs {
    TensorView query, key, value, out, out_grad, softmax_max, softmax_sum, topk;
    TensorView atten_mask;  // optional 2-D bool/uint8; validated, never read
    TensorView query_grad, key_grad, value_grad;  // outputs (dq, dk, dv)
};

// out, softmax_max, softmax_sum <- selected attention of query over the keys its topk blocks name.
OPENNSA_API void forward(const ForwardArgs& args, const Params& params);

// query_grad, key_grad, value_grad <- gradients given out_grad (dO) and the forward's statistics.
OPENNSA_API void backward(const BackwardArgs& args, const Params& params);

// Optional caller-provided scratch: when `workspace` holds at least *_workspace_bytes(...) bytes
// and starts at a 64-byte boundary, the operators use it instead of allocating. The size depends
// on shapes, parameters and the compute path the CPU and OPENNSA_KERNEL select (0 when no query
// row belongs to a batch); a workspace too small for the path that runs is left unused, not
// overrun.
OPENNSA_API std::size_t forward_workspace_bytes(const ForwardArgs& args, const Params& params);
OPENNSA_API std::size_t backward_workspace_bytes(const BackwardArgs& args, const Params& params);
OPENNSA_API void forward(const ForwardArgs& args, const Params& params, std::span<std::byte> workspace);
OPENNSA_API void backward(const BackwardArgs& args, const Params& params, std::span<std::byte> workspace);

}  // namespace opennsa

namespace opennsa {

// The same operators under the names the rest of the family uses.
inline void select_attention(const ForwardArgs& args, const Params& params) { forward(args, params); }
inline void select_attention_backward(const BackwardArgs& args, const Params& params) { backward(args, params); }

}  // namespace opennsa
