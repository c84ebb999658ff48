// Test support shared by every operator's tests: run seeds, host tensors with poisoned outputs,
// and the accuracy metrics of docs/spec (relative Frobenius and max error against float64).
// Every case draws fresh data from its own seed, printed on failure.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/convert.hpp"
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

// The forward / gradient tolerance for an output of dtype t.
double tol_out(DType t);
double tol_grad(DType t);

// relative Frobenius error <= tol and max error / max |ref| <= 4 tol.
::testing::AssertionResult close(const std::vector<double>& got, const std::vector<double>& ref, double tol,
                                 const char* what);

}  // namespace nsa_test
