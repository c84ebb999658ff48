// Selected attention test cases: random problems (shapes, batches, selection, mask mode,
// layout), their tensors, and the softmax-statistics check.
#pragma once

#include "ops/select_attention/problem.hpp"
#include "ops/select_attention/reference.hpp"
#include "support.hpp"

namespace sel = opennsa::detail::select_attention;

namespace nsa_test {

// A random problem: shapes, batches, selection, mask mode, layout.
struct Case {
    DType dtype = DType::f32;
    std::int64_t N1 = 4, N2 = 2, Dk = 16, Dv = 16, bs = 8, C = 4;
    std::vector<std::int64_t> q_lens{20}, kv_lens{20};  // per batch
    std::int64_t pad_q = 0, pad_kv = 0;  // padding rows after the last batch
    bool varlen = false;                 // pass the cumulative arrays
    bool causal = true;
    bool transposed = false;             // non-contiguous inputs and outputs
    double empty_slot = 0.1, duplicate = 0.1, beyond_causal = 0.1;  // topk content mix
    double scale = 0.0;                  // 0: 1/sqrt(Dk)
    std::uint64_t seed = 1;

    std::int64_t T1() const;
    std::int64_t T2() const;
    std::string describe() const;
};

Case random_case(std::mt19937_64& rng, DType dtype);

// All tensors of a case, inputs random, outputs poisoned.
struct Tensors {
    Case c;
    opennsa::Params params;
    HostTensor q, k, v, topk, out, smax, ssum, dO, dq, dk, dv;

    explicit Tensors(const Case& c);
    opennsa::ForwardArgs forward_args();
    opennsa::BackwardArgs backward_args();
    // Fills out / smax / ssum from the float64 reference forward (rounded), for backward inputs.
    void set_forward_from_reference();
    void poison_outputs();
};

// Softmax statistics: log(sum) + max within 1e-3 of the reference log-sum-exp; empty rows exactly
// zero; the 8 copies of a row bitwise equal.
::testing::AssertionResult stats_ok(const Tensors& t, const sel::reference::ForwardResult& ref);

}  // namespace nsa_test
