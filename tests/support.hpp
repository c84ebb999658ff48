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

// Random draws for case builders: an integer in [lo, hi], a coin with probability p.
struct Draw {
    std::mt19937_64& rng;
    std::int64_t uniform(std::int64_t lo, std::int64_t hi) {
        return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
    }
    bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }
};

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

// A view of `shape` with `strides` (elements, any sign, rank 1..4) into its own zeroed buffer,
// with 16 guard elements before and after everything the view addresses.
HostTensor guarded_tensor(DType dtype, const std::vector<std::int64_t>& shape, const std::vector<std::int64_t>& strides);

// The forward / gradient tolerance for an output of dtype t.
double tol_out(DType t);
double tol_grad(DType t);
// The compression family's outputs and gradients (docs/spec/README.md: fp16 1e-3, bf16 8e-3;
// fp32 2e-5, fp64 1e-12).
double tol_compress(DType t);

// Sets OPENNSA_KERNEL for the scope (the compute paths a test iterates over).
class PathScope {
public:
    explicit PathScope(const char* kernel);
    ~PathScope();
    PathScope(const PathScope&) = delete;
    PathScope& operator=(const PathScope&) = delete;
};
// "avx2" (when the CPU has it) and "portable".
std::vector<const char*> kernel_paths();

// relative Frobenius error <= tol and max error / max |ref| <= 4 tol.
::testing::AssertionResult close(const std::vector<double>& got, const std::vector<double>& ref, double tol,
                                 const char* what);

}  // namespace nsa_test
