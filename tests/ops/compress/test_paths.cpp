// Every compute path (AVX2 where the CPU has it, and OPENNSA_KERNEL=portable) against the float64
// reference: random varlen shapes in every dtype and layout, named edge cases, non-finite inputs,
// and caller-provided workspaces. Outputs are poisoned before each call; every element must be
// written and no byte outside a view. Tolerances: docs/spec/README.md (compress outputs and
// gradients: fp16 1e-3, bf16 8e-3, fp32 2e-5).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "ops/compress/cases.hpp"

using namespace compress_test;
using nsa_test::case_seed;
using nsa_test::close;

namespace {

double tol(DType t) { return nsa_test::tol_compress(t); }

// Forward and backward of one case on the current path, against the reference.
void check_case(const Case& c) {
    SCOPED_TRACE(c.describe());
    Tensors t(c);
    opennsa::compress(t.forward_args(), t.params);
    EXPECT_TRUE(t.output.fully_written()) << "output";
    EXPECT_TRUE(close(t.output.dense(), t.reference_forward(), tol(c.dtype), "output"));
    opennsa::compress_backward(t.backward_args(), t.params);
    EXPECT_TRUE(t.input_grad.fully_written()) << "inputGradOut";
    EXPECT_TRUE(t.weight_grad.fully_written()) << "weightGradOut";
    const auto g = t.reference_backward();
    EXPECT_TRUE(close(t.input_grad.dense(), g.input_grad, tol(c.dtype), "inputGradOut"));
    EXPECT_TRUE(close(t.weight_grad.dense(), g.weight_grad, tol(c.dtype), "weightGradOut"));
}

Case base(DType dtype, std::uint64_t salt) {
    Case c;
    c.dtype = dtype;
    c.seed = case_seed(salt);
    return c;
}

const DType kAllDtypes[] = {DType::f16, DType::bf16, DType::f32, DType::f64};

}  // namespace

TEST(CompressPaths, RandomShapesMatchReference) {
    for (const char* path : kernel_paths()) {
        PathScope scope(path);
        SCOPED_TRACE(path);
        std::mt19937_64 rng(case_seed(100));
        for (DType dtype : kAllDtypes)
            for (int i = 0; i < 16; ++i) check_case(random_case(rng, dtype, i % 2 == 1));
    }
}

TEST(CompressPaths, EdgeCases) {
    for (const char* path : kernel_paths()) {
        PathScope scope(path);
        SCOPED_TRACE(path);
        for (DType dtype : kAllDtypes) {
            Case c = base(dtype, 200);
            // empty batches, a batch shorter than l, tails not covered, rows past the last entry
            c.N = 3, c.D = 13, c.l = 6, c.d = 4;
            c.lens = {0, 17, 5, 0, 6, 9};
            c.pad = 4;
            check_case(c);
            c.leading_zero = true;  // cumulative array with a leading 0
            check_case(c);
            c.seq_type = opennsa::kSeqLenPerBatch;
            check_case(c);
            // l == d (no overlap), d == 1 (every position), l and d not multiples of 16
            c = base(dtype, 201);
            c.N = 1, c.D = 9, c.l = 5, c.d = 5, c.lens = {23, 5, 4};
            check_case(c);
            c.d = 1;
            check_case(c);
            c.N = 5, c.D = 31, c.l = 23, c.d = 7, c.lens = {60, 22, 23, 31};
            check_case(c);
            c.l = 1, c.d = 1, c.lens = {7, 1};  // every token its own window
            check_case(c);
            // the production shape (N = 4, D = 192, l = 32, d = 16), a few windows
            c = base(dtype, 202);
            c.N = 4, c.D = 192, c.l = 32, c.d = 16, c.lens = {100, 47};
            check_case(c);
            c.D = 128;
            check_case(c);
            // no window at all: Tc = 0 (the forward has nothing to write, the backward writes zeros)
            c = base(dtype, 203);
            c.l = 8, c.d = 2, c.lens = {7, 0, 3}, c.pad = 2;
            check_case(c);
            c.lens = {0}, c.pad = 0;  // T = 0
            check_case(c);
        }
    }
}

TEST(CompressPaths, EveryLayoutOfEveryTensor) {
    const Layout inputs[] = {Layout::contiguous, Layout::gapped, Layout::reversed, Layout::inner_strided,
                             Layout::broadcast};
    const Layout outputs[] = {Layout::contiguous, Layout::gapped, Layout::reversed, Layout::inner_strided};
    for (const char* path : kernel_paths()) {
        PathScope scope(path);
        SCOPED_TRACE(path);
        for (DType dtype : {DType::bf16, DType::f32}) {
            Case c = base(dtype, 300);
            c.N = 3, c.D = 21, c.l = 6, c.d = 3, c.lens = {20, 4, 13}, c.pad = 1;
            for (Layout l : inputs) {
                c.input = c.weight = c.output_grad = l;
                check_case(c);
            }
            c.input = c.weight = c.output_grad = Layout::contiguous;
            for (Layout l : outputs) {
                c.output = c.input_grad = c.weight_grad = l;
                check_case(c);
            }
        }
    }
}

// A NaN in one input element reaches exactly the outputs that read it, and a NaN in one weight
// or outputGrad element likewise, on every path: the same NaN pattern as the float64 reference.
TEST(CompressPaths, NanReachesExactlyTheOutputsThatReadIt) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (const char* path : kernel_paths()) {
        PathScope scope(path);
        SCOPED_TRACE(path);
        for (DType dtype : {DType::bf16, DType::f16, DType::f32, DType::f64}) {
            Case c = base(dtype, 400);
            c.N = 2, c.D = 19, c.l = 8, c.d = 3, c.lens = {30, 12}, c.pad = 2;
            for (int where = 0; where < 5; ++where) {
                SCOPED_TRACE(where);
                Tensors t(c);
                switch (where) {
                    case 0: t.input.set(13, 1, 17, nan); break;   // inside overlapping windows, the D % 8 tail
                    case 1: t.input.set(31, 0, 4, nan); break;    // second batch, vector lanes
                    case 2: t.input.set(29, 0, 0, nan); break;    // batch 0's tail: read by no window
                    case 3: t.weight.set(5, 1, 0, nan); break;    // every window of head 1
                    case 4: t.output_grad.set(4, 0, 9, nan); break;
                }
                opennsa::compress(t.forward_args(), t.params);
                const auto ref = t.reference_forward();
                EXPECT_TRUE(same_nan_pattern(t.output.dense(), ref, "output"));
                opennsa::compress_backward(t.backward_args(), t.params);
                const auto g = t.reference_backward();
                EXPECT_TRUE(same_nan_pattern(t.input_grad.dense(), g.input_grad, "inputGradOut"));
                EXPECT_TRUE(same_nan_pattern(t.weight_grad.dense(), g.weight_grad, "weightGradOut"));
                if (where == 2) {
                    for (double v : t.output.dense()) EXPECT_FALSE(std::isnan(v)) << "an unread row reached the output";
                }
            }
        }
    }
}

// The span overloads: the reported size is enough and is used as given; a missing, short or
// misaligned workspace still works (the library allocates its own).
TEST(CompressPaths, CallerWorkspace) {
    for (const char* path : kernel_paths()) {
        PathScope scope(path);
        SCOPED_TRACE(path);
        Case c = base(DType::bf16, 500);
        c.N = 3, c.D = 24, c.l = 8, c.d = 4, c.lens = {200, 90};
        Tensors t(c);
        EXPECT_EQ(opennsa::compress_workspace_bytes(t.forward_args(), t.params), 0u);
        const std::size_t need = opennsa::compress_backward_workspace_bytes(t.backward_args(), t.params);
        EXPECT_GT(need, 0u);
        opennsa::compress_backward(t.backward_args(), t.params);
        const auto want_dx = t.input_grad.bytes, want_dw = t.weight_grad.bytes;
        alignas(64) static std::byte buffer[1 << 20];
        ASSERT_LE(need + 64, sizeof(buffer));
        for (std::span<std::byte> ws : {std::span<std::byte>(buffer, need), std::span<std::byte>(buffer + 1, need),
                                        std::span<std::byte>(buffer, need / 2), std::span<std::byte>()}) {
            std::fill(buffer, buffer + sizeof(buffer), std::byte{0xAB});
            t.poison_outputs();
            opennsa::compress_backward(t.backward_args(), t.params, ws);
            EXPECT_EQ(t.input_grad.bytes, want_dx);
            EXPECT_EQ(t.weight_grad.bytes, want_dw);
        }
        t.poison_outputs();
        opennsa::compress(t.forward_args(), t.params, {});
        EXPECT_TRUE(t.output.fully_written());
    }
}

// A dimension of one element may have any stride: no element is addressed through it. The AVX2
// forward used to step its row pointer on past the last window row by the input's row stride,
// a pointer overflow for T = l = 1 and a row stride of -8.6e17 (UBSan; found by
// fuzz/capi_family, reproducer fuzz/findings/capi_family/found-compress-one-row-any-stride).
TEST(CompressPaths, OneRowTakesAnyRowStride) {
    constexpr std::int64_t N = 3, D = 32;
    for (const char* path : kernel_paths()) {
        PathScope scope(path);
        SCOPED_TRACE(path);
        for (std::int64_t stride : {std::int64_t{-858628030536279746}, std::numeric_limits<std::int64_t>::max(),
                                    std::numeric_limits<std::int64_t>::min() + 1}) {
            SCOPED_TRACE(stride);
            std::vector<float> x(N * D), w(N), out(N * D, NAN), g(N * D), dx(N * D, NAN), dw(N, NAN);
            for (std::size_t i = 0; i < x.size(); ++i) x[i] = 0.25f * static_cast<float>(i % 7) - 0.5f, g[i] = 0.5f;
            for (std::size_t h = 0; h < w.size(); ++h) w[h] = 1.0f + static_cast<float>(h);
            const auto one_row = [&](void* data) { return TensorView::strided(data, DType::f32, {1, N, D}, {stride, D, 1}); };
            opennsa::CompressParams p;
            p.block_size = p.stride = 1;
            p.seq_lens = {1};
            opennsa::compress({one_row(x.data()), TensorView::contiguous(w.data(), DType::f32, {1, N}), one_row(out.data())}, p);
            for (std::int64_t h = 0; h < N; ++h)
                for (std::int64_t e = 0; e < D; ++e) EXPECT_EQ(out[h * D + e], w[h] * x[h * D + e]) << h << ", " << e;
            opennsa::compress_backward({one_row(g.data()), one_row(x.data()),
                                        TensorView::contiguous(w.data(), DType::f32, {1, N}), one_row(dx.data()),
                                        TensorView::contiguous(dw.data(), DType::f32, {1, N})},
                                       p);
            for (std::int64_t h = 0; h < N; ++h) {
                double want = 0;
                for (std::int64_t e = 0; e < D; ++e) {
                    EXPECT_EQ(dx[h * D + e], w[h] * g[h * D + e]);
                    want += 0.5 * x[h * D + e];
                }
                EXPECT_NEAR(dw[h], want, 1e-5);
            }
        }
    }
}
