// Test problems of the compression operator: tensors of any layout (strided, gapped, reversed,
// negative inner stride, broadcast) in their own guarded buffers, random cases, and the float64
// reference on them. Every case draws fresh data from its own seed (printed by describe()).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "ops/compress/problem.hpp"
#include "ops/compress/reference.hpp"
#include "support.hpp"

namespace compress_test {

using opennsa::DType;
using opennsa::TensorView;
namespace cmp = opennsa::detail::compress;

enum class Layout {
    contiguous,     // row-major
    gapped,         // heads outermost, rows padded: non-contiguous with gaps
    reversed,       // row-major with padded rows, dimension 0 walked backwards (negative stride)
    inner_strided,  // innermost stride -2: every element read or written on its own
    broadcast,      // one dimension with stride 0 (inputs only): heads (3-D) or rows (2-D) share data
};
const char* layout_name(Layout l);

// A rank-2 or rank-3 view into its own buffer, with guard bytes around everything it addresses.
struct Strided {
    std::vector<unsigned char> bytes;
    TensorView view;

    static Strided make(DType dtype, std::vector<std::int64_t> shape, Layout layout);

    std::int64_t dim(int d) const { return d < view.rank ? view.shape[d] : 1; }
    std::size_t offset_bytes(std::int64_t i, std::int64_t j, std::int64_t k = 0) const;
    double get(std::int64_t i, std::int64_t j, std::int64_t k = 0) const;
    void set(std::int64_t i, std::int64_t j, std::int64_t k, double v);  // rounds to the dtype
    void fill_normal(std::mt19937_64& rng);
    std::vector<double> dense() const;  // row-major doubles
    void poison();                      // every byte 0xFF (NaN in every float dtype)
    bool all_poisoned() const;
    // Every element of the view was written and no byte outside it was.
    ::testing::AssertionResult fully_written() const;
};

struct Case {
    DType dtype = DType::f32;
    std::int64_t N = 2, D = 8, l = 4, d = 2;
    std::vector<std::int64_t> lens = {9, 3};  // per-batch lengths
    std::int64_t pad = 0;                     // input rows past the last batch
    std::int64_t seq_type = 0;                // actSeqLenType
    bool leading_zero = false;                // type 0: the array starts with 0 (an empty first batch)
    Layout input = Layout::contiguous, weight = Layout::contiguous, output = Layout::contiguous;
    Layout output_grad = Layout::contiguous, input_grad = Layout::contiguous, weight_grad = Layout::contiguous;
    std::uint64_t seed = 1;

    std::int64_t T() const;
    opennsa::CompressParams params() const;
    std::string describe() const;
};

// A random case: 1-4 batches of 0 .. 3l + d tokens (empty, shorter than l, with tails), l in
// [1, 40], d in [1, l], N in [1, 5], D in [1, 40] (or 192 now and then), some padding rows; the
// layouts random when `strided`.
Case random_case(std::mt19937_64& rng, DType dtype, bool strided);

// The tensors of a case: random inputs (input, weight, outputGrad), poisoned outputs.
struct Tensors {
    Case c;
    opennsa::CompressParams params;
    std::int64_t Tc = 0;
    Strided input, weight, output, output_grad, input_grad, weight_grad;

    explicit Tensors(const Case& c);
    opennsa::CompressArgs forward_args() const;
    opennsa::CompressGradArgs backward_args() const;
    void poison_outputs();

    std::vector<double> reference_forward() const;
    cmp::reference::BackwardResult reference_backward() const;
};

// The same positions are NaN in got and ref (and only there); the rest are compared elsewhere.
::testing::AssertionResult same_nan_pattern(const std::vector<double>& got, const std::vector<double>& ref,
                                            const char* what);

using nsa_test::kernel_paths;
using nsa_test::PathScope;

}  // namespace compress_test
