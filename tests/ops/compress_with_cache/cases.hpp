// Test problems of the decoding compression: a paged raw cache [numBlocks, P, N, D] (pages in
// shuffled or contiguous order, contiguous or strided), its block table, per-batch lengths, slots
// (distinct for triggered batches; -1, repeated or out of range for the others), and an output
// cache [R, N, D]. Every tensor lives in its own buffer with guard bytes; the cache is poisoned
// (every byte 0xFF) so that the bytes a call must not write can be checked. Fresh data per case
// from its own seed (printed by describe()).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "ops/compress_with_cache/problem.hpp"
#include "ops/compress_with_cache/reference.hpp"
#include "support.hpp"

namespace cwc_test {

using nsa_test::HostTensor;
using opennsa::DType;
using opennsa::TensorView;
namespace cwc = opennsa::detail::compress_with_cache;

enum class Layout {
    contiguous,  // row-major
    padded,      // row-major with gaps after each head row and each page row
    strided,     // innermost stride 2 (inputs) or -2 (cache): every element on its own
};
const char* layout_name(Layout l);

// Element access of views of any rank (tensors from nsa_test::guarded_tensor).
using nsa_test::guarded_tensor;
std::size_t offset_bytes(const HostTensor& t, const std::vector<std::int64_t>& index);
double get(const HostTensor& t, const std::vector<std::int64_t>& index);
void set(HostTensor& t, const std::vector<std::int64_t>& index, double v);  // rounds to the dtype

struct Case {
    DType dtype = DType::bf16;
    std::int64_t N = 2, D = 8, l = 4, d = 2, P = 4;
    std::vector<std::int64_t> lens = {4, 6, 5, 3};
    std::int64_t spare_pages = 2;  // pages of the cache no batch uses
    std::int64_t spare_rows = 3;   // rows of outputCache beyond one per batch
    std::int64_t spare_cols = 1;   // block-table columns beyond the longest batch's pages
    bool shuffle_pages = true;     // pages in random order (false: batch after batch, in order)
    bool garble_unread = true;     // block-table entries no window reads hold garbage (-1, < 0, too large)
    Layout input = Layout::contiguous, cache = Layout::contiguous;
    bool weight_transposed = false;
    std::uint64_t seed = 1;

    std::int64_t B() const { return static_cast<std::int64_t>(lens.size()); }
    std::int64_t pages_of(std::int64_t b) const;
    bool triggered(std::int64_t b) const;
    opennsa::CompressWithCacheParams params() const;
    std::string describe() const;
};

// A random case: B 1..5, N 1..8, D 1..40 (or 128 / 192 now and then), l in 1..40 with d in 1..l
// (or the production l = 32, d = 16), P in 1..70, lengths around the trigger boundaries
// (triggered, one past, one short, L_b < l, 0); layouts random when `strided`.
Case random_case(std::mt19937_64& rng, DType dtype, bool strided);

struct Tensors {
    Case c;
    opennsa::CompressWithCacheParams params;
    std::int64_t pages = 0, cols = 0, R = 0;
    HostTensor input, weight, slots, table, cache;

    explicit Tensors(const Case& c);
    opennsa::CompressWithCacheArgs args() const;
    std::int64_t slot(std::int64_t b) const;
    void set_slot(std::int64_t b, std::int32_t v);
    std::int64_t page(std::int64_t b, std::int64_t j) const;
    void set_page(std::int64_t b, std::int64_t j, std::int32_t v);

    // The written rows of the float64 reference, in triggered order (Problem::triggered).
    std::vector<double> reference() const;
    // The rows the call wrote, read back as doubles, in the same order.
    std::vector<double> written() const;
    // Every element of the triggered slots was written; no other byte of the cache buffer was
    // (the cache was poisoned first).
    ::testing::AssertionResult only_slots_written() const;
};

// Bytes of every input, to check that a call changed none of them.
std::vector<std::vector<unsigned char>> input_bytes(const Tensors& t);

using nsa_test::kernel_paths;
using nsa_test::PathScope;
inline double tol(DType t) { return nsa_test::tol_compress(t); }

}  // namespace cwc_test
