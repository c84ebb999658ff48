// How the decoding compression splits its work (shared by the generic and the AVX2 passes, so
// both have the same tasks). A task is one (triggered batch, head, block of kElemsPerTask
// elements of D): it reads the l window rows of that block through the block table and writes its
// block of the batch's slot. A decoding step has few windows (often one batch of a few heads), so
// D is split too and batch 1 has work for every core. Each output element is one ascending FMA
// chain over the window, whatever the split: the bits never depend on the thread count.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/checked.hpp"
#include "ops/compress_with_cache/problem.hpp"

namespace opennsa::detail::compress_with_cache {

// 64 fp32 lanes: the 8 ymm accumulators of the AVX2 pass, two cache lines of 16-bit storage.
inline constexpr std::int64_t kElemsPerTask = 64;

struct Task {
    std::int64_t batch, head, e0, e1;  // elements [e0, e1) of head `head` of batch `batch`'s slot
};

inline std::int64_t blocks_per_row(const Problem& p) noexcept { return ceil_div(p.D, kElemsPerTask); }
// Validated sizes: triggered <= B, N and D fit a view, so the product is checked once here.
inline std::int64_t task_count(const Problem& p) {
    return checked_product({static_cast<std::int64_t>(p.triggered.size()), p.N, blocks_per_row(p)}, "the task list");
}
inline Task task_at(const Problem& p, std::int64_t task) noexcept {
    const std::int64_t blocks = blocks_per_row(p);
    const std::int64_t block = task % blocks, pair = task / blocks;
    const std::int64_t e0 = block * kElemsPerTask;
    return {p.triggered[static_cast<std::size_t>(pair / p.N)], pair % p.N, e0, std::min(p.D, e0 + kElemsPerTask)};
}

// The window rows of batch b, head h, in order (r = 0 .. l-1): row() points at element 0 of the
// head in raw row r; next() steps to r + 1. Pages are looked up once per page, and no table entry
// past the window is read.
template <class S>
class WindowRows {
public:
    WindowRows(const Problem& p, std::int64_t b, std::int64_t h) noexcept
        : p_(p), b_(b), h_(h), col_(p.window_start(b) / p.input.page_size), row_(p.window_start(b) % p.input.page_size),
          left_(p.l), base_(p.input.row<S>(p.table.at(b, col_), 0, h)) {}
    S* row() const noexcept { return base_ + row_ * p_.input.view.strides[1]; }
    void next() noexcept {
        if (--left_ > 0 && ++row_ == p_.input.page_size) {
            row_ = 0;
            base_ = p_.input.row<S>(p_.table.at(b_, ++col_), 0, h_);
        }
    }

private:
    const Problem& p_;
    std::int64_t b_, h_, col_, row_, left_;
    S* base_;
};

}  // namespace opennsa::detail::compress_with_cache
