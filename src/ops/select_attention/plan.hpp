// How a validated Problem is cut into work: where each query row sits, which key segments it
// sees, the list of key blocks, the reverse (key block -> query rows) index, and the workspace
// layout. Everything here depends on the problem only, never on the thread count.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/workspace.hpp"
#include "ops/select_attention/problem.hpp"

namespace opennsa::detail::select_attention {

// Where query token t sits: its batch, its position i in the batch, and the batch's keys.
struct QueryRow {
    std::int64_t batch = -1;  // -1: padding row (past the last batch)
    std::int64_t pos = 0;     // i = t - first query of the batch
    std::int64_t kv0 = 0;     // first key row of the batch
    std::int64_t S2 = 0;      // keys in the batch
};

inline QueryRow locate_query(const Problem& p, std::int64_t t) noexcept {
    const auto& q = p.batches.q;
    if (t >= q.back()) return {};
    // The batch is the last b with q[b] <= t < q[b+1]; empty batches share starts, so take the
    // upper bound and step back.
    const auto it = std::upper_bound(q.begin(), q.end(), t);
    const std::int64_t b = (it - q.begin()) - 1;
    return {b, t - q[b], p.batches.kv[b], p.batches.key_count(b)};
}

// A run of visible keys [begin, end), absolute key rows, from one topk slot.
struct Segment {
    std::int64_t begin, end;
};

// The visible part of block x for a query at position `pos`: [begin, end) in batch positions.
inline Segment visible_part(const Problem& p, const QueryRow& row, std::int64_t x) noexcept {
    const std::int64_t begin = x * p.bs;  // < S2 for a valid x, so no overflow
    std::int64_t end = begin + std::min(p.bs, row.S2 - begin);
    if (p.causal) end = std::min(end, row.pos + 1);
    return {begin, std::max(begin, end)};
}

// The segments query token t sees through kv head n2, in slot order, duplicates kept, empty ones
// dropped. `out` holds C entries. Returns the number of segments; *keys gets the key count.
int collect_segments(const Problem& p, std::int64_t t, std::int64_t n2, const QueryRow& row, Segment* out,
                     std::int64_t* keys) noexcept;

// Key blocks of all batches, numbered globally: batch b owns blocks [first[b], first[b+1]).
struct KeyBlocks {
    std::vector<std::int64_t> first;
    std::int64_t total() const noexcept { return first.back(); }
};
KeyBlocks make_key_blocks(const Problem& p);

// Where global key block gb lies: batch b, index x within the batch, its first key row and how
// many keys it holds (bs, or fewer for a batch's last block).
struct KeyBlock {
    std::int64_t batch, x, key0, keys;
};
inline KeyBlock locate_block(const Problem& p, const KeyBlocks& blocks, std::int64_t gb) noexcept {
    const std::int64_t b = (std::upper_bound(blocks.first.begin(), blocks.first.end(), gb) - blocks.first.begin()) - 1;
    const std::int64_t x = gb - blocks.first[static_cast<std::size_t>(b)];
    const std::int64_t begin = x * p.bs;
    return {b, x, p.batches.kv[b] + begin, std::min(p.bs, p.batches.key_count(b) - begin)};
}

// For each (n2, key block): the query tokens that see part of it, in increasing t, once per slot
// that names it (duplicates are repeated). Built with a stable counting sort, one kv head per task.
struct ReverseIndex {
    std::span<std::int64_t> offsets;  // N2 * blocks + 1 prefix sums
    std::span<std::int64_t> rows;     // the query tokens
    std::span<const std::int64_t> of(std::int64_t n2, std::int64_t blocks, std::int64_t block) const noexcept {
        const std::int64_t cell = n2 * blocks + block;
        return {rows.data() + offsets[cell], static_cast<std::size_t>(offsets[cell + 1] - offsets[cell])};
    }
};
void build_reverse_index(const Problem& p, const KeyBlocks& blocks, ReverseIndex& index, int threads);
// The same cells, each entry t * C + slot (so ascending in t, then slot): which slot of token t
// named the block, for passes that keep per-slot results.
void build_reverse_index_slots(const Problem& p, const KeyBlocks& blocks, ReverseIndex& index, int threads);

// Query tokens per forward / dQ task. Fixed, so the work split never depends on thread count.
inline constexpr std::int64_t kQueryChunk = 8;

}  // namespace opennsa::detail::select_attention
