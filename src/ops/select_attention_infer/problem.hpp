// The one place that knows the decoding selected attention's rules (docs/spec/decoding.md
// section 3): a call's tensors and parameters become a validated Problem, or an Error naming the
// parameter (CANN's names), the value seen and the rule. Nothing downstream re-checks. The three
// layouts are reduced here to one addressing scheme: element (batch b, token s, head h) of query,
// out and topk, and (page, row, head) of the paged caches.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/checked.hpp"
#include "core/paged.hpp"
#include "core/view.hpp"
#include "opennsa/select_attention_infer.hpp"

namespace opennsa::detail::select_attention_infer {

enum class Layout { bsnd, bsh, tnd };

// Per-(batch, token) rows of a query-like tensor, whatever the layout: head h, element e of token
// s of batch b is at data + b*batch + (first[b] + s)*token + h*head + e*elem (strides in elements;
// TND has batch = 0 and first[b] = the batch's first row, the other layouts first[b] = 0).
struct TokenRows {
    void* data = nullptr;
    std::int64_t batch = 0, token = 0, head = 0, elem = 0;
    template <class T>
    T* at(const std::vector<std::int64_t>& first, std::int64_t b, std::int64_t s, std::int64_t h) const noexcept {
        return static_cast<T*>(data) + b * batch + (first[static_cast<std::size_t>(b)] + s) * token + h * head;
    }
};

struct Problem {
    DType dtype = DType::f32;  // of query, key, value, out
    Layout layout = Layout::bsnd;
    std::int64_t B = 0;        // batches (blockTable.shape[0])
    std::int64_t Q = 0;        // query tokens per batch in the tensor: BSND / BSH shape[1]; TND: T
    std::int64_t N1 = 0, N2 = 0, G = 0, Dk = 0, Dv = 0;
    std::int64_t sel_len = 0;    // l' (selectBlockSize)
    std::int64_t sel_count = 0;  // k (selectBlockCount)
    // The most keys one selected block can hold: min(l', longest L_b), at least 1. Scratch is sized
    // by it, never by the nominal l'.
    std::int64_t block_len = 1;
    double scale = 1.0;
    std::vector<std::int64_t> q_len, kv_len;  // Q_b, L_b
    std::vector<std::int64_t> first;          // TokenRows::first: TND row of (b, 0), else 0
    std::vector<std::int64_t> row_start;      // B + 1 prefix sums of Q_b: the computed (b, s) pairs

    TokenRows q, out, topk;  // topk: `head` steps over kv heads, `elem` over slots
    PagedCache key, value;
    BlockTable table;
    TensorView out_view;     // the whole output (for zero fills)

    // Computed (b, s) pairs: sum of Q_b.
    std::int64_t tokens() const noexcept { return row_start.back(); }
    // Blocks of batch b: ceil(L_b / l'); a slot index must lie in [-1, blocks).
    std::int64_t blocks(std::int64_t b) const noexcept { return ceil_div(kv_len[static_cast<std::size_t>(b)], sel_len); }
    // Token s of batch b sees raw positions p < visible_end(b, s) (the causal rule for drafts).
    std::int64_t visible_end(std::int64_t b, std::int64_t s) const noexcept {
        const auto i = static_cast<std::size_t>(b);
        return kv_len[i] - (q_len[i] - 1 - s);
    }
    std::int32_t slot(std::int64_t b, std::int64_t s, std::int64_t n2, std::int64_t j) const noexcept {
        return *(topk.at<const std::int32_t>(first, b, s, n2) + j * topk.elem);
    }
    // The batch and token of computed pair r (0 <= r < tokens()).
    void locate(std::int64_t r, std::int64_t* b, std::int64_t* s) const noexcept {
        const auto it = std::upper_bound(row_start.begin(), row_start.end(), r);
        *b = (it - row_start.begin()) - 1;
        *s = r - row_start[static_cast<std::size_t>(*b)];
    }
};

// The most keys a query row may see through its slots: selectBlockCount x block_len (as the
// training selected attention).
inline constexpr std::int64_t kMaxRowKeys = std::int64_t{1} << 24;

Problem validate(const SelectAttentionInferArgs& args, const SelectAttentionInferParams& params);

// The launch's content checks, before anything is written: every slot of every computed row is
// -1 or a block of its batch, and the block-table entries of each batch's pages name a page.
void check_contents(const Problem& p);

}  // namespace opennsa::detail::select_attention_infer
