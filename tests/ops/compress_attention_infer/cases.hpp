// Compress attention infer test cases: random decoding problems (layouts, heads, l / d / l' / k,
// page sizes, per-batch query / compressed / raw lengths, the multi-token rule), their tensors --
// a paged compressed cache whose pages lie scattered in random order and whose unused rows and
// pages hold NaN (a read of them would show), block-table entries past a batch's pages out of
// range (a read of them would fail) -- with poisoned outputs, and the checks of the outputs
// against the float64 reference (topk set-wise as docs/spec/README.md "Numerics" says).
#pragma once

#include "ops/compress_attention_infer/problem.hpp"
#include "ops/compress_attention_infer/reference.hpp"
#include "support.hpp"

namespace cai = opennsa::detail::compress_attention_infer;

namespace nsa_test {

struct CattnInferCase {
    DType dtype = DType::f32;
    bool bsnd = false;
    std::int64_t N1 = 4, N2 = 2, Dk = 16, Dv = 12;
    std::int64_t l = 4, d = 2, sel = 8, k = 3, P = 4;  // l, d, l', k, pageBlockSize
    std::vector<std::int64_t> q_lens{1}, c_lens{9};
    std::vector<std::int64_t> raw_lens;  // empty: actualSelKvSeqLen absent
    bool pass_q_lens = false;            // give actualQSeqLen (else every Q_b must be 1)
    bool mask = false;                   // give attentionMask (the multi-token rule)
    std::int64_t extra_q = 0;            // BSND: Q = max Q_b + extra_q (padding rows)
    bool shuffled = true;                // pages in random order (else batch by batch, in order)
    std::int64_t spare_pages = 2;        // pages no batch uses
    bool transposed = false;             // non-contiguous query / output / topk
    bool rank4_cache = false;            // key / value as [numBlocks, P, N2, D]
    bool identical_keys = false;         // every key of a (batch, kv head) equal: exact score ties
    std::int64_t nan_query_row = -1;     // query row whose head 0 gets a NaN
    std::int64_t nan_key = -1;           // compressed token of batch 0 whose kv head 0 key gets a NaN
    std::int64_t inf_value = -1;         // compressed token of batch 0 whose kv head 0 value gets an inf
    double scale = 0.0;                  // 0: 1/sqrt(Dk)
    std::uint64_t seed = 1;

    std::int64_t B() const { return static_cast<std::int64_t>(c_lens.size()); }
    std::int64_t max_q() const;
    std::int64_t Q() const { return max_q() + extra_q; }
    std::int64_t rows() const;  // TND: sum Q_b; BSND: B * Q
    std::int64_t pages_of(std::int64_t b) const { return (c_lens[static_cast<std::size_t>(b)] + P - 1) / P; }
    std::int64_t max_pages() const;
    std::string describe() const;
};

// C(S) of a raw sequence of S tokens.
std::int64_t compressed_tokens(std::int64_t S, std::int64_t l, std::int64_t d);

CattnInferCase random_cattn_infer_case(std::mt19937_64& rng, DType dtype);

struct CattnInferTensors {
    CattnInferCase c;
    opennsa::CompressAttentionInferParams params;
    HostTensor q, key, value, out, topk;  // q / out / topk stored as [rows, N, D]; views may be 4-D
    TensorView qv, outv, topkv, keyv, valuev, tablev, maskv;
    std::vector<std::int32_t> table;
    std::vector<unsigned char> mask_bytes;

    explicit CattnInferTensors(const CattnInferCase& c);
    CattnInferTensors(const CattnInferTensors&) = delete;
    opennsa::CompressAttentionInferArgs args() const;
    cai::Problem problem() const;
    // out poisoned 0xFF (NaN), topk 0xA5 (-1 is a value it may hold).
    void poison_outputs();
    static constexpr unsigned char kTopkPoison = 0xA5;
    ::testing::AssertionResult topk_fully_written() const;
    // Compressed token j of batch b as stored (its page through the table, its row).
    std::int64_t cache_row(std::int64_t b, std::int64_t j) const;
};

// Every output element written, nothing outside the views, out close to the reference (NaN / inf
// where it has them), topk valid and set-wise right.
::testing::AssertionResult outputs_ok(const CattnInferTensors& t, const cai::reference::Result& ref);

// topk of every row: rows not computed all -1; the forced blocks 0, NS_b - 2, NS_b - 1 first (in
// ascending order, each once), then NaN scores (ascending), then numbers with a reference score >=
// k-th - 1e-5 max(1, k-th), in descending order where the reference scores differ by more than
// that; -1 past NS_b. exact: slot for slot the reference.
::testing::AssertionResult topk_ok(const CattnInferTensors& t, const cai::reference::Result& ref, bool exact);

// The reference's out with NaN / inf exactly where it has them, the rest close().
::testing::AssertionResult out_ok(const CattnInferTensors& t, const cai::reference::Result& ref);

}  // namespace nsa_test
