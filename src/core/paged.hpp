// Paged caches (docs/spec/README.md, "Paged caches"): a cache tensor [numBlocks, P, H] or
// [numBlocks, P, Nx, Dx] (the same memory), read through an int32 block table [B, maxBlocks]:
// logical token p of batch b lives in page blockTable[b][p / P], row p % P; head x, element e of a
// row is at [page][p % P][x * Dx + e]. Shared by the decoding operators.
#pragma once

#include <cstdint>
#include <vector>

#include "core/checked.hpp"
#include "core/validate.hpp"
#include "core/view.hpp"

namespace opennsa::detail {

// A validated paged cache: the view plus its page geometry. Element (page, row, head, e) of a
// rank-3 view is [page, row, head * dim + e]; of a rank-4 view [page, row, head, e].
struct PagedCache {
    TensorView view;
    std::int64_t pages = 0, page_size = 0, heads = 0, dim = 0;

    // The strides of one logical row's elements, whatever the rank.
    std::int64_t head_stride() const noexcept { return view.rank == 4 ? view.strides[2] : dim * view.strides[2]; }
    std::int64_t elem_stride() const noexcept { return view.rank == 4 ? view.strides[3] : view.strides[2]; }
    template <class T>
    T* row(std::int64_t page, std::int64_t r, std::int64_t head) const noexcept {
        return static_cast<T*>(view.data) + page * view.strides[0] + r * view.strides[1] + head * head_stride();
    }
    // Head `head` as a 3-D view [numBlocks, P, dim]: element (page, r, e) of that head, so the
    // row helpers of 3-D views (core/rows.hpp) read cache rows.
    TensorView head_view(std::int64_t head) const noexcept {
        TensorView v = view;
        v.rank = 3;
        v.shape[2] = dim;
        v.strides[2] = elem_stride();
        v.shape[3] = v.strides[3] = 0;
        if (view.data != nullptr)  // an empty cache may have none
            v.data = static_cast<char*>(view.data) + head * head_stride() * static_cast<std::int64_t>(dtype_size(view.dtype));
        return v;
    }
};

// Reads `a` (present, float dtype checked by the caller) as a paged cache of `heads` heads of
// `dim` elements per row: rank 3 [numBlocks, P, heads * dim] or rank 4 [numBlocks, P, heads, dim].
// page_size: the expected P (pageBlockSize); an error names the mismatch.
inline PagedCache paged_cache(const Arg& a, std::int64_t page_size, std::int64_t heads, std::int64_t dim,
                              const char* page_size_name) {
    const TensorView& t = *a.t;
    if (t.rank != 3 && t.rank != 4)
        invalid(a.name, ": rank ", t.rank, " (shape ", shape_string(t),
                ") must be 3 ([numBlocks, pageBlockSize, N*D]) or 4 ([numBlocks, pageBlockSize, N, D])");
    for (int d = 0; d < t.rank; ++d)
        if (t.shape[d] < 0) invalid(a.name, ".shape[", d, "] = ", t.shape[d], " is negative");
    if (t.shape[1] != page_size)
        invalid(a.name, ".shape[1] = ", t.shape[1], " must equal ", page_size_name, " = ", page_size);
    if (t.rank == 3) {
        const std::int64_t width = checked_product({heads, dim}, "a cache row");
        if (t.shape[2] != width)
            invalid(a.name, ".shape[2] = ", t.shape[2], " must equal ", heads, " heads x ", dim, " = ", width);
    } else {
        check_dim(a, 2, heads, "heads");
        check_dim(a, 3, dim, "head dim");
    }
    return {t, t.shape[0], page_size, heads, dim};
}

// A validated int32 block table [B, maxBlocks]: entry (b, j) as an int64.
struct BlockTable {
    TensorView view;
    std::int64_t at(std::int64_t b, std::int64_t j) const noexcept {
        return *element<const std::int32_t>(view, b, j);
    }
};

// The pages batch b reads for `tokens` logical tokens, ceil(tokens / P), after checking that the
// table has that many columns.
inline std::int64_t pages_used(const BlockTable& table, const char* table_name, std::int64_t b, std::int64_t tokens,
                               std::int64_t page_size) {
    const std::int64_t cols = table.view.shape[1];
    const std::int64_t used = ceil_div(tokens, page_size);
    if (used > cols)
        invalid(table_name, ": batch ", b, " holds ", tokens, " tokens, ", used, " pages of ", page_size,
                ", but the table has ", cols, " columns");
    return used;
}

// The table has a column for every page of batch b's `tokens` tokens (pages of page_size).
inline void check_block_table_columns(const BlockTable& table, const char* table_name, std::int64_t b,
                                      std::int64_t tokens, std::int64_t page_size) {
    (void)pages_used(table, table_name, b, tokens, page_size);
}

// The same for every batch's `lengths[b]` tokens: the metadata half of check_block_table, for a
// first phase that must not read tensor contents.
inline void check_block_table_columns(const BlockTable& table, const char* table_name,
                                      const std::vector<std::int64_t>& lengths, std::int64_t page_size) {
    for (std::size_t b = 0; b < lengths.size(); ++b)
        check_block_table_columns(table, table_name, static_cast<std::int64_t>(b), lengths[b], page_size);
}

// The entries that cover batch b's tokens [first, end) (columns that exist: checked before) name
// pages of the cache. Only those entries are read.
inline void check_block_table_entries(const BlockTable& table, const char* table_name, std::int64_t b,
                                      std::int64_t first, std::int64_t end, const PagedCache& cache,
                                      const char* cache_name) {
    if (end <= first) return;
    for (std::int64_t j = first / cache.page_size; j <= (end - 1) / cache.page_size; ++j) {
        const std::int64_t page = table.at(b, j);
        if (page < 0 || page >= cache.pages)
            invalid(table_name, "[", b, ", ", j, "] = ", page, " is not a page of ", cache_name, " (", cache.pages,
                    " pages)");
    }
}

// The entries batch b reads for `tokens` logical tokens (pages [0, ceil(tokens / P))) must exist
// (the table has that many columns) and name a page of the cache: checked for every batch before
// anything is written. lengths[b]: tokens of batch b. Only the entries that cover tokens are read.
inline void check_block_table(const BlockTable& table, const char* table_name, const std::vector<std::int64_t>& lengths,
                              const PagedCache& cache, const char* cache_name) {
    for (std::size_t b = 0; b < lengths.size(); ++b) {
        const auto batch = static_cast<std::int64_t>(b);
        check_block_table_columns(table, table_name, batch, lengths[b], cache.page_size);
        check_block_table_entries(table, table_name, batch, 0, lengths[b], cache, cache_name);
    }
}

// Reads `a` (present) as a block table of `batches` rows: int32, rank 2 [batches, maxBlocks].
inline BlockTable block_table(const Arg& a, std::int64_t batches, const char* batches_name) {
    check_dtype(a, DType::i32, " (block indices are int32)");
    check_rank(a, 2, " ([B, maxBlocks])");
    check_dim(a, 0, batches, batches_name);
    check_extent(a, false);
    return {*a.t};
}

}  // namespace opennsa::detail
