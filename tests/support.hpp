// Test support: random problems, host tensors with poisoned outputs, and SPEC.md section 7's
// accuracy metrics. Every case draws fresh data from its own seed, printed on failure.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "nsa/dtype.hpp"
#include "nsa/problem.hpp"
#include "nsa/reference.hpp"
#include "opennsa/opennsa.hpp"

namespace nsa_test {

using opennsa::DType;
using opennsa::TensorView;

// One seed per test run (env OPENNSA_TEST_SEED to replay), mixed with a per-case salt.
std::uint64_t run_seed();
inline std::uint64_t case_seed(std::uint64_t salt) { return run_seed() * 0x9E3779B97F4A7C15ull + salt; }

// A 3-D (or 2-D) tensor in its own buffer. Layout "transposed" stores [T, N, D] as [N, T, D + 3]
// and views it with strides, so the view is non-contiguous and has gaps between rows.
struct HostTensor {
    std::vector<unsigned char> bytes;
    TensorView view;
    bool gaps = false;

    static HostTensor make(DType dtype, std::int64_t T, std::int64_t N, std::int64_t D, bool transposed);
    static HostTensor make2d(DType dtype, std::int64_t R, std::int64_t C);

    std::size_t offset_bytes(std::int64_t i, std::int64_t j, std::int64_t k) const;
    double get(std::int64_t i, std::int64_t j, std::int64_t k) const;
    void set(std::int64_t i, std::int64_t j, std::int64_t k, double v);  // rounds to the dtype
    void fill_normal(std::mt19937_64& rng, double stddev = 1.0);
    std::vector<double> dense() const;  // row-major copy as doubles
    void poison();                       // every byte 0xFF (NaN in every float dtype)
    // Every element of the view was written, and no byte outside the view was.
    ::testing::AssertionResult fully_written() const;
};

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

// SPEC.md section 7 tolerance for an output of dtype t.
double tol_out(DType t);
double tol_grad(DType t);

// relative Frobenius error <= tol and max error / max |ref| <= 4 tol.
::testing::AssertionResult close(const std::vector<double>& got, const std::vector<double>& ref, double tol,
                                 const char* what);

// Softmax statistics: log(sum) + max within 1e-3 of the reference log-sum-exp; empty rows exactly
// zero; the 8 copies of a row bitwise equal.
::testing::AssertionResult stats_ok(const Tensors& t, const opennsa::reference::ForwardResult& ref);

}  // namespace nsa_test
