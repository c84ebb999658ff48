// The one place that knows the compress attention infer's rules (docs/spec/decoding.md section 2):
// a call's tensors and parameters become a validated Problem, or an Error naming the parameter (by
// its CANN name), the value seen and the rule. Also the rules every path shares: which compressed
// tokens a query token sees (always a prefix), the selection-block count NS_b and its forced
// blocks, where a batch's rows live in either layout.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/checked.hpp"
#include "core/paged.hpp"
#include "core/view.hpp"
#include "opennsa/compress_attention_infer.hpp"

namespace opennsa::detail::compress_attention_infer {

struct Problem {
    DType dtype = DType::f32;  // of query, key, value, out
    bool bsnd = false;         // layout BSND (else TND)
    std::int64_t B = 0;        // batches (blockTable.shape[0])
    std::int64_t N1 = 0, N2 = 0, G = 0, Dk = 0, Dv = 0;
    std::int64_t l = 0, d = 0, sel_len = 0, sel_count = 0, m = 0, n = 0;  // l, d, l', k, l' / d, l / d
    double scale = 1.0;
    bool multi_token = false;  // attentionMaskOptional given: the causal rule for draft tokens
    std::vector<std::int64_t> q_len, c_len, raw_len;  // Q_b, C_b, L_b (raw_len empty when absent)
    std::vector<std::int64_t> q_start;                // TND: first query row of batch b; B + 1 entries
    std::int64_t rows = 0;   // query rows of the tensor: T (TND) or B * Q (BSND)
    std::int64_t Q = 0;      // BSND: query.shape[1]; TND: 0
    std::int64_t max_q = 0, max_c = 0, max_ns = 0;

    TensorView q, out, topk;  // rank 3 (TND) or 4 (BSND)
    PagedCache key, value;
    BlockTable table;

    // Batch b's rows of a rank-3 (TND) or rank-4 (BSND) tensor as a 3-D view [rows, heads, dim]
    // whose row s is query token s of the batch.
    TensorView batch_view(const TensorView& t, std::int64_t b) const noexcept {
        TensorView v;
        v.dtype = t.dtype;
        v.rank = 3;
        const int o = bsnd ? 1 : 0;
        for (int x = 0; x < 3; ++x) {
            v.shape[x] = t.shape[x + o];
            v.strides[x] = t.strides[x + o];
        }
        const std::int64_t first = bsnd ? b * t.strides[0] : q_start[static_cast<std::size_t>(b)] * t.strides[0];
        v.shape[0] = bsnd ? Q : q_len[static_cast<std::size_t>(b)];
        v.data = static_cast<char*>(t.data) + first * static_cast<std::int64_t>(dtype_size(t.dtype));
        return v;
    }

    // Query token s of batch b sees compressed tokens [0, visible(b, s)): all C_b, or with the
    // multi-token rule those whose window ends at or before its raw position L_b - Q_b + s
    // (j*d + l <= L_b - Q_b + s + 1). Without raw lengths (only allowed when every Q_b is 1) the
    // single token sees everything.
    std::int64_t visible(std::int64_t b, std::int64_t s) const noexcept {
        const std::int64_t C = c_len[static_cast<std::size_t>(b)];
        if (!multi_token || raw_len.empty()) return C;
        // Validation: L_b >= Q_b, so the token's end position L_b - Q_b + s + 1 is in [1, L_b].
        const std::int64_t end = raw_len[static_cast<std::size_t>(b)] - q_len[static_cast<std::size_t>(b)] + s + 1;
        return end < l ? 0 : std::min(C, (end - l) / d + 1);
    }

    // NS_b = ceil(((C_b - 1)*d + l) / l'), the selection blocks the compressed span covers (0
    // when C_b = 0); validation made it representable.
    std::int64_t block_count(std::int64_t b) const noexcept {
        const std::int64_t C = c_len[static_cast<std::size_t>(b)];
        return C == 0 ? 0 : ceil_div((C - 1) * d + l, sel_len);
    }

    // The forced blocks {0, NS_b - 2, NS_b - 1}.
    static bool forced(std::int64_t J, std::int64_t ns) noexcept { return J == 0 || J >= ns - 2; }
};

// Every rule that depends on no tensor's contents (what the C API's GetWorkspaceSize checks).
Problem validate(const CompressAttentionInferArgs& args, const CompressAttentionInferParams& params);

// The block-table entries every batch reads lie in [0, numBlocks) (the launch's check).
void check_block_table_entries(const Problem& p);

}  // namespace opennsa::detail::compress_attention_infer
