#include "ops/select_attention/plan.hpp"

#include "core/threading.hpp"

namespace opennsa::detail::select_attention {

int collect_segments(const Problem& p, std::int64_t t, std::int64_t n2, const QueryRow& row, Segment* out,
                     std::int64_t* keys) noexcept {
    int n = 0;
    std::int64_t total = 0;
    for (std::int64_t j = 0; j < p.C; ++j) {
        const std::int32_t x = *element<const std::int32_t>(p.topk, t, n2, j);
        if (x < 0) continue;  // -1: empty slot (values were checked before compute)
        const Segment s = visible_part(p, row, x);
        if (s.begin == s.end) continue;
        out[n++] = {row.kv0 + s.begin, row.kv0 + s.end};
        total += s.end - s.begin;
    }
    *keys = total;
    return n;
}

KeyBlocks make_key_blocks(const Problem& p) {
    KeyBlocks kb;
    kb.first.assign(1, 0);
    for (std::int64_t b = 0; b < p.batches.count(); ++b)
        kb.first.push_back(kb.first.back() + p.batches.block_count(b, p.bs));
    return kb;
}

namespace {

// Counting sort of every (t, n2, slot) that sees at least one key of its block into its
// (n2, block) cell, in increasing t then slot; `entry(t, slot)` is what the cell stores. Each kv
// head owns its own run of cells, so heads are counted and scattered in parallel; the result
// does not depend on the thread count.
template <class Entry>
void fill_reverse_index(const Problem& p, const KeyBlocks& blocks, ReverseIndex& index, int threads, Entry&& entry) {
    const std::int64_t nb = blocks.total();
    auto& off = index.offsets;
    std::fill(off.begin(), off.end(), 0);
    auto for_each_hit = [&](std::int64_t n2, auto&& fn) {
        for (std::int64_t b = 0; b < p.batches.count(); ++b)
            for (std::int64_t t = p.batches.q[b]; t < p.batches.q[b + 1]; ++t) {
                const QueryRow row{b, t - p.batches.q[b], p.batches.kv[b], p.batches.key_count(b)};
                for (std::int64_t j = 0; j < p.C; ++j) {
                    const std::int32_t x = *element<const std::int32_t>(p.topk, t, n2, j);
                    if (x < 0) continue;
                    const Segment s = visible_part(p, row, x);
                    if (s.begin == s.end) continue;
                    fn(n2 * nb + blocks.first[b] + x, t, j);
                }
            }
    };
    parallel_for(p.N2, threads, [&](std::int64_t n2, int) {
        for_each_hit(n2, [&](std::int64_t cell, std::int64_t, std::int64_t) { ++off[cell + 1]; });
    });
    for (std::size_t c = 1; c < off.size(); ++c) off[c] += off[c - 1];
    // Scatter with a running cursor per cell (borrowing offsets[cell] and restoring it after).
    parallel_for(p.N2, threads, [&](std::int64_t n2, int) {
        for_each_hit(n2, [&](std::int64_t cell, std::int64_t t, std::int64_t j) { index.rows[off[cell]++] = entry(t, j); });
    });
    for (std::size_t c = off.size() - 1; c > 0; --c) off[c] = off[c - 1];
    off[0] = 0;
}

}  // namespace

void build_reverse_index(const Problem& p, const KeyBlocks& blocks, ReverseIndex& index, int threads) {
    fill_reverse_index(p, blocks, index, threads, [](std::int64_t t, std::int64_t) { return t; });
}

void build_reverse_index_slots(const Problem& p, const KeyBlocks& blocks, ReverseIndex& index, int threads) {
    fill_reverse_index(p, blocks, index, threads, [&](std::int64_t t, std::int64_t j) { return t * p.C + j; });
}

}  // namespace opennsa::detail::select_attention
