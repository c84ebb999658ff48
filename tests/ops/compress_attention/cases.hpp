// Compress attention test cases: random problems (shapes, batches, l / d / l' / k, sparse mode,
// masks, forced blocks, layouts), their tensors with poisoned outputs, and the checks of the
// outputs against the float64 reference (statistics in either layout, topk set-wise as
// docs/spec/README.md "Numerics" says, NaN patterns).
#pragma once

#include "ops/compress_attention/problem.hpp"
#include "ops/compress_attention/reference.hpp"
#include "support.hpp"

namespace ca = opennsa::detail::compress_attention;

namespace nsa_test {

struct CompressCase {
    DType dtype = DType::f32;
    std::int64_t N1 = 4, N2 = 2, Dk = 16, Dv = 12;
    std::int64_t l = 4, d = 2, sel = 8, k = 3;  // compressBlockSize, compressStride, selectBlockSize, selectBlockCount
    std::vector<std::int64_t> q_lens{20}, c_lens{9};  // per batch: query tokens, compressed tokens
    std::int64_t pad_q = 0, pad_kv = 0;  // rows after the last batch
    bool varlen = false;                 // pass the cumulative arrays
    std::int64_t sparse_mode = 1;
    bool atten_mask = false;             // pass attenMaskOptional (read in modes 0 / 1)
    double mask_density = 0.3;           // chance that an entry of a random mask is set
    bool nsa_causal_mask = false;        // the mask is the NSA causal rule instead of random
    double forced = 0.0;                 // chance that a topkMask entry is set (0: no topkMask)
    bool transposed = false;             // non-contiguous 3-D inputs and outputs
    int mask_layout = 0;                 // 0: padded rows, 1: column-major, 2: contiguous
    bool token_major = false;            // stats_token_major
    double scale = 0.0;                  // 0: 1/sqrt(Dk)
    bool identical_keys = false;         // all keys of a (batch, kv head) equal: exact score ties
    std::int64_t nan_query_row = -1;     // query token whose head 0 gets a NaN
    std::int64_t nan_key_row = -1;       // compressed row whose kv head 0 gets a NaN
    std::int64_t inf_value_row = -1;     // compressed row whose kv head 0 value gets an inf
    std::uint64_t seed = 1;

    std::int64_t T1() const;
    std::int64_t T2() const;
    std::int64_t max_q() const;
    std::int64_t max_c() const;
    std::int64_t max_ns() const;
    std::string describe() const;
};

// The compressed-token count of a raw sequence of S tokens: C(S).
std::int64_t compressed_count(std::int64_t S, std::int64_t l, std::int64_t d);

CompressCase random_compress_case(std::mt19937_64& rng, DType dtype);

// A 2-D uint8 / bool mask in its own buffer, read through strides.
struct HostMask {
    std::vector<unsigned char> bytes;
    TensorView view;
    static HostMask make(DType dtype, std::int64_t R, std::int64_t C, int layout);
    void set(std::int64_t i, std::int64_t j, unsigned char v);
    unsigned char get(std::int64_t i, std::int64_t j) const;
};

struct CompressTensors {
    CompressCase c;
    opennsa::CompressAttentionParams params;
    HostTensor q, k, v, out, topk, smax, ssum, dO, dq, dk, dv;
    HostMask mask, topk_mask;

    explicit CompressTensors(const CompressCase& c);
    opennsa::CompressAttentionArgs forward_args() const;
    opennsa::CompressAttentionGradArgs backward_args() const;
    ca::Problem forward_problem() const;
    ca::Problem backward_problem() const;
    // out / smax / ssum from the float64 reference forward (rounded), as backward inputs.
    void set_forward_from_reference();
    // Every output byte poisoned: 0xFF (NaN in every float dtype), topk 0xA5 (-1 is a value it
    // may legitimately hold, and 0xFFFFFFFF is -1).
    void poison_outputs();
    static constexpr unsigned char kTopkPoison = 0xA5;
    // Every topk element was written (none still 0xA5A5A5A5), and no byte outside its view was.
    ::testing::AssertionResult topk_fully_written() const;
};

// attention_out and the gradients: NaN and inf exactly where the reference has them, the rest close().
::testing::AssertionResult close_with_nan(const std::vector<double>& got, const std::vector<double>& ref, double tol,
                                          const char* what);

// Gradients: close_with_nan, or, where the terms cancel, an error within tol of the terms'
// magnitudes (the reference's *_abs sums: relative Frobenius error against them <= tol and max
// error <= 4 tol max magnitude). A wrong or missing term is an error of a term's size, far above.
::testing::AssertionResult close_gradient(const std::vector<double>& got, const std::vector<double>& ref,
                                          const std::vector<double>& magnitude, double tol, const char* what);

// Statistics (in the case's layout): log(sum) + max within 1e-3 of the reference log-sum-exp;
// rows that see nothing (and padding rows) exactly 0; NaN where the reference is NaN; the 8 copies
// of a row bitwise equal.
::testing::AssertionResult stats_ok(const CompressTensors& t, const ca::reference::ForwardResult& ref);

// topk of every (token, kv head): padding rows all -1; the first min(k, NS_b) slots distinct blocks
// of the batch, -1 after; forced blocks first (the lowest ones, ascending), then NaN scores
// (ascending), then numbers, each with a reference score >= k-th - 1e-5 max(1, k-th), in
// descending order where the reference scores differ by more than that, blocks of exactly zero
// reference score in ascending index. exact: slot for slot the reference.
::testing::AssertionResult topk_ok(const CompressTensors& t, const ca::reference::ForwardResult& ref, bool exact);

}  // namespace nsa_test
