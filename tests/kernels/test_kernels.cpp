// Every compute path the CPU offers (forced with OPENNSA_KERNEL) against the fp64 reference and
// bitwise across thread counts, on the shapes the SIMD paths handle specially; plus unit tests
// of the AVX2 microkernel's tile edges and of its vector exp.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "core/convert.hpp"
#include "kernels/avx2/kernels.hpp"
#include "ops/select_attention/avx2.hpp"
#include "kernels/dispatch.hpp"
#include "ops/select_attention/cases.hpp"

using namespace nsa_test;
using opennsa::DType;
using opennsa::detail::KernelPath;

namespace {

struct PathParam {
    const char* path;
    DType dtype;
};

std::string param_name(const ::testing::TestParamInfo<PathParam>& info) {
    return std::string(info.param.path) + "_" + opennsa::dtype_name(info.param.dtype);
}

class Paths : public ::testing::TestWithParam<PathParam> {
protected:
    void SetUp() override {
        if (std::string(GetParam().path) == "avx2" && !opennsa::detail::cpu_has_avx2())
            GTEST_SKIP() << "this CPU has no AVX2 + FMA";
        ::setenv("OPENNSA_KERNEL", GetParam().path, 1);
        ASSERT_STREQ(opennsa::detail::kernel_path_name(opennsa::detail::kernel_path()), GetParam().path);
    }
    void TearDown() override {
        ::unsetenv("OPENNSA_KERNEL");
        opennsa::set_num_threads(0);
#if defined(__x86_64__)
        sel::avx2::set_chunk_tokens_for_testing(0);
#endif
    }

    Case base(std::uint64_t salt) const {
        Case c;
        c.dtype = GetParam().dtype;
        c.seed = case_seed(salt);
        return c;
    }

    // Forward and backward vs the reference, then the same bits with 2 and 3 threads (and, on the
    // AVX2 path, with 3-token dQ-partial chunks, so several chunks run).
    void check(const Case& c, const std::function<void(Tensors&)>& edit = {}) const {
        SCOPED_TRACE(c.describe());
        Tensors t(c);
        if (edit) edit(t);
        const auto fp = sel::validate_forward(t.forward_args(), t.params);
        const auto fref = sel::reference::forward(fp);
        opennsa::set_num_threads(1);
        opennsa::forward(t.forward_args(), t.params);
        ASSERT_TRUE(t.out.fully_written());
        EXPECT_TRUE(close(t.out.dense(), fref.out, tol_out(c.dtype), "out"));
        EXPECT_TRUE(stats_ok(t, fref));
        const auto out1 = t.out.bytes, max1 = t.smax.bytes, sum1 = t.ssum.bytes;
        for (int threads : {2, 3}) {
            opennsa::set_num_threads(threads);
            t.poison_outputs();
            opennsa::forward(t.forward_args(), t.params);
            EXPECT_EQ(t.out.bytes, out1) << threads << " threads";
            EXPECT_EQ(t.smax.bytes, max1) << threads << " threads";
            EXPECT_EQ(t.ssum.bytes, sum1) << threads << " threads";
        }

        t.poison_outputs();
        t.set_forward_from_reference();
        const auto bref = sel::reference::backward(sel::validate_backward(t.backward_args(), t.params));
        opennsa::set_num_threads(1);
        opennsa::backward(t.backward_args(), t.params);
        ASSERT_TRUE(t.dq.fully_written());
        ASSERT_TRUE(t.dk.fully_written());
        ASSERT_TRUE(t.dv.fully_written());
        const double tol = tol_grad(c.dtype);
        EXPECT_TRUE(close(t.dq.dense(), bref.dq, tol, "dq"));
        EXPECT_TRUE(close(t.dk.dense(), bref.dk, tol, "dk"));
        EXPECT_TRUE(close(t.dv.dense(), bref.dv, tol, "dv"));
        const auto dq1 = t.dq.bytes, dk1 = t.dk.bytes, dv1 = t.dv.bytes;
        auto same_grads = [&](const char* what) {
            t.dq.poison();
            t.dk.poison();
            t.dv.poison();
            opennsa::backward(t.backward_args(), t.params);
            EXPECT_EQ(t.dq.bytes, dq1) << what;
            EXPECT_EQ(t.dk.bytes, dk1) << what;
            EXPECT_EQ(t.dv.bytes, dv1) << what;
        };
        for (int threads : {2, 3}) {
            opennsa::set_num_threads(threads);
            same_grads(threads == 2 ? "2 threads" : "3 threads");
        }
#if defined(__x86_64__)
        if (std::string(GetParam().path) == "avx2") {
            sel::avx2::set_chunk_tokens_for_testing(3);
            same_grads("3-token chunks");
            sel::avx2::set_chunk_tokens_for_testing(0);
        }
#endif
    }
};

}  // namespace

TEST_P(Paths, HotBlocksEveryQuerySelects) {
    Case c = base(1);
    c.N1 = 16;  // G = 8: a hot block sees 8 rows per token, many row tiles
    c.N2 = 2;
    c.q_lens = {150};
    c.kv_lens = {150};
    c.bs = 16;
    c.C = 4;
    check(c, [&](Tensors& t) {
        for (std::int64_t i = 0; i < 150; ++i)
            for (std::int64_t n = 0; n < c.N2; ++n) {
                t.topk.set(i, n, 0, 0);
                t.topk.set(i, n, 1, static_cast<double>(i / 16));
                t.topk.set(i, n, 2, 0);  // a duplicate slot counts twice
                t.topk.set(i, n, 3, i >= 32 ? static_cast<double>(i / 16 - 1) : -1.0);
            }
    });
}

TEST_P(Paths, SingleHeadPerGroup) {
    Case c = base(2);
    c.N1 = 3;
    c.N2 = 3;
    c.q_lens = {60};
    c.kv_lens = {75};
    check(c);
}

TEST_P(Paths, LargeGroupAndDkNotDv) {
    Case c = base(3);
    c.N1 = 16;
    c.N2 = 1;
    c.Dk = 48;
    c.Dv = 24;
    c.q_lens = {40};
    c.kv_lens = {40};
    check(c);
}

TEST_P(Paths, OddBlockSizes) {
    for (std::int64_t bs : {1, 3, 7, 17, 65}) {
        Case c = base(10 + static_cast<std::uint64_t>(bs));
        c.bs = bs;
        c.C = bs == 1 ? 9 : 3;
        c.q_lens = {bs == 65 ? 140 : 45};
        c.kv_lens = c.q_lens;
        check(c);
    }
}

TEST_P(Paths, OddHeadDims) {
    Case c = base(4);
    c.Dk = 13;
    c.Dv = 5;
    c.q_lens = {33};
    c.kv_lens = {41};
    c.causal = false;
    check(c);
}

TEST_P(Paths, VarlenWithPadding) {
    Case c = base(5);
    c.q_lens = {0, 37, 19, 50};
    c.kv_lens = {20, 37, 0, 80};
    c.pad_q = 5;
    c.pad_kv = 3;
    c.varlen = true;
    check(c);
}

TEST_P(Paths, NonContiguousViews) {
    Case c = base(6);
    c.transposed = true;
    c.Dk = 20;
    c.Dv = 12;
    c.q_lens = {30, 25};
    c.kv_lens = {28, 30};
    c.varlen = true;
    check(c);
}

INSTANTIATE_TEST_SUITE_P(Kernels, Paths,
                         ::testing::Values(PathParam{"portable", DType::bf16}, PathParam{"portable", DType::f16},
                                           PathParam{"avx2", DType::bf16}, PathParam{"avx2", DType::f16},
                                           PathParam{"avx2", DType::f32}),
                         param_name);

// The workspace size depends on the path (each lays out its scratch differently). A caller's
// workspace sized while another path was forced is used when large enough and replaced by an
// allocation otherwise: results are the path's own bits either way.
TEST(Workspace, SizedUnderAnotherPath) {
    if (!opennsa::detail::cpu_has_avx2()) GTEST_SKIP() << "one path only";
    Case c;
    c.dtype = DType::bf16;
    c.N1 = 8;
    c.N2 = 2;
    c.Dk = 24;
    c.Dv = 16;
    c.q_lens = c.kv_lens = {70, 33};
    c.seed = case_seed(79);
    Tensors t(c);
    t.set_forward_from_reference();
    const char* paths[] = {"portable", "avx2"};
    for (int run = 0; run < 2; ++run) {
        ::setenv("OPENNSA_KERNEL", paths[run], 1);
        t.poison_outputs();
        t.set_forward_from_reference();
        opennsa::backward(t.backward_args(), t.params);
        const auto dq = t.dq.bytes, dk = t.dk.bytes, dv = t.dv.bytes;
        ::setenv("OPENNSA_KERNEL", paths[1 - run], 1);
        const std::size_t other = opennsa::backward_workspace_bytes(t.backward_args(), t.params);
        ::setenv("OPENNSA_KERNEL", paths[run], 1);
        const std::size_t own = opennsa::backward_workspace_bytes(t.backward_args(), t.params);
        ASSERT_GT(own, 0u);
        ASSERT_GT(other, 0u);
        std::vector<std::byte> ws(std::max(own, other) + 64, std::byte{0x5a});
        auto* base = reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(ws.data()) + 63) & ~std::uintptr_t{63});
        t.dq.poison();
        t.dk.poison();
        t.dv.poison();
        opennsa::backward(t.backward_args(), t.params, std::span<std::byte>(base, other));
        EXPECT_EQ(t.dq.bytes, dq) << paths[run] << " run on a workspace sized for " << paths[1 - run];
        EXPECT_EQ(t.dk.bytes, dk) << paths[run];
        EXPECT_EQ(t.dv.bytes, dv) << paths[run];
    }
    ::unsetenv("OPENNSA_KERNEL");
}

#if defined(__x86_64__)
TEST(Avx2Kernels, GemmTileEdges) {
    if (!opennsa::detail::cpu_has_avx2()) GTEST_SKIP() << "no AVX2";
    std::mt19937_64 rng(case_seed(77));
    std::normal_distribution<float> nd;
    for (std::int64_t M : {1, 5, 6, 7, 13})
        for (std::int64_t N : {8, 16, 24, 40})
            for (std::int64_t K : {0, 1, 7, 33})
                for (bool accumulate : {false, true}) {
                    const std::int64_t lda = K + 3, ldb = N + 5, ldc = N + 8;
                    std::vector<float> a(static_cast<std::size_t>(M * lda + 1)), b(static_cast<std::size_t>(K * ldb + 1));
                    std::vector<float> c(static_cast<std::size_t>(M * ldc));
                    for (float& x : a) x = nd(rng);
                    for (float& x : b) x = nd(rng);
                    for (float& x : c) x = nd(rng);
                    const std::vector<float> c0 = c;
                    opennsa::detail::avx2::gemm(M, N, K, a.data(), lda, b.data(), ldb, c.data(), ldc, accumulate);
                    for (std::int64_t i = 0; i < M; ++i)
                        for (std::int64_t j = 0; j < ldc; ++j) {
                            const std::size_t at = static_cast<std::size_t>(i * ldc + j);
                            if (j >= N) {
                                EXPECT_EQ(c[at], c0[at]) << "wrote outside the tile at " << i << "," << j;
                                continue;
                            }
                            double ref = accumulate ? c0[at] : 0.0, mag = std::abs(ref);
                            for (std::int64_t k = 0; k < K; ++k) {
                                const double term = double(a[static_cast<std::size_t>(i * lda + k)]) *
                                                    b[static_cast<std::size_t>(k * ldb + j)];
                                ref += term;
                                mag += std::abs(term);
                            }
                            EXPECT_NEAR(c[at], ref, 1e-6 * (mag + 1)) << M << "x" << N << "x" << K << " at " << i << "," << j;
                        }
                }
}

// The zmm form of the matmul tiles gives the ymm form's bits (each element is the same
// ascending FMA chain), on every tile edge: rows 1..17, columns 8..72 (every tail of a 32-column
// panel), K 0..33, overwrite and accumulate; neither writes outside its tile.
TEST(Avx2Kernels, ZmmGemmMatchesYmmBitwise) {
    if (!opennsa::detail::cpu_has_avx512()) GTEST_SKIP() << "no AVX-512";
    std::mt19937_64 rng(case_seed(78));
    std::normal_distribution<float> nd;
    for (std::int64_t M : {1, 7, 8, 9, 17})
        for (std::int64_t N : {8, 16, 24, 32, 40, 56, 72})
            for (std::int64_t K : {0, 1, 5, 33})
                for (bool accumulate : {false, true}) {
                    const std::int64_t lda = K + 3, ldb = N + 5, ldc = N + 8;
                    std::vector<float> a(static_cast<std::size_t>(M * lda + 1)), b(static_cast<std::size_t>(K * ldb + 1));
                    std::vector<float> c(static_cast<std::size_t>(M * ldc));
                    for (float& x : a) x = nd(rng);
                    for (float& x : b) x = nd(rng);
                    for (float& x : c) x = nd(rng);
                    std::vector<float> ymm = c, zmm = c;
                    opennsa::detail::set_zmm_gemm_for_testing(0);
                    opennsa::detail::avx2::gemm(M, N, K, a.data(), lda, b.data(), ldb, ymm.data(), ldc, accumulate);
                    opennsa::detail::set_zmm_gemm_for_testing(1);
                    opennsa::detail::avx2::gemm(M, N, K, a.data(), lda, b.data(), ldb, zmm.data(), ldc, accumulate);
                    opennsa::detail::set_zmm_gemm_for_testing(-1);
                    ASSERT_EQ(0, std::memcmp(ymm.data(), zmm.data(), ymm.size() * sizeof(float)))
                        << M << "x" << N << "x" << K << " accumulate=" << accumulate;
                    for (std::int64_t i = 0; i < M; ++i)
                        for (std::int64_t j = N; j < ldc; ++j)
                            ASSERT_EQ(zmm[static_cast<std::size_t>(i * ldc + j)], c[static_cast<std::size_t>(i * ldc + j)]);
                }
}

// The bf16 dot tiles against fp64 on bf16 data, on every tile edge (rows 1..17, columns 8..72,
// K odd and even, 0 included): within fp32 rounding of the sum of |terms|, nothing written outside
// the tile, each row's bits the same whatever tile it sits in (M = 1 gives row 0's bits), and the
// pair dot used for D equal to column 0 bit for bit.
TEST(Avx2Kernels, Bf16DotTilesMatchFp64) {
    if (!opennsa::detail::cpu_has_avx512_bf16()) GTEST_SKIP() << "no AVX512_BF16";
    namespace d = opennsa::detail;
    std::mt19937_64 rng(case_seed(79));
    std::normal_distribution<float> nd;
    const auto bf16_value = [&] { return d::bf16_to_f32(d::f32_to_bf16(nd(rng))); };
    for (std::int64_t M : {1, 7, 8, 9, 17})
        for (std::int64_t N : {8, 16, 24, 32, 40, 72})
            for (std::int64_t K : {0, 1, 2, 7, 64, 65}) {
                const std::int64_t lda = K + 3, ldb = N + 5, ldc = N + 8;
                std::vector<float> a(static_cast<std::size_t>(M * lda + 1)), b(static_cast<std::size_t>(K * ldb + 1));
                for (float& x : a) x = bf16_value();
                for (float& x : b) x = bf16_value();
                std::vector<float> c(static_cast<std::size_t>(M * ldc), 12345.0f), dot(static_cast<std::size_t>(M), -1.0f);
                d::avx2::gemm_bf16(M, N, K, a.data(), lda, b.data(), ldb, c.data(), ldc, dot.data());
                std::vector<float> first(static_cast<std::size_t>(ldc), 12345.0f);
                float first_dot = -1.0f;
                d::avx2::gemm_bf16(1, N, K, a.data(), lda, b.data(), ldb, first.data(), ldc, &first_dot);
                ASSERT_EQ(0, std::memcmp(first.data(), c.data(), static_cast<std::size_t>(N) * sizeof(float)))
                    << M << "x" << N << "x" << K;
                for (std::int64_t i = 0; i < M; ++i) {
                    ASSERT_EQ(std::bit_cast<std::uint32_t>(dot[static_cast<std::size_t>(i)]),
                              std::bit_cast<std::uint32_t>(c[static_cast<std::size_t>(i * ldc)]))
                        << M << "x" << N << "x" << K << " row " << i;
                    for (std::int64_t j = 0; j < ldc; ++j) {
                        const float got = c[static_cast<std::size_t>(i * ldc + j)];
                        if (j >= N) {
                            ASSERT_EQ(got, 12345.0f) << "wrote outside the tile at " << i << "," << j;
                            continue;
                        }
                        double ref = 0.0, mag = 0.0;
                        for (std::int64_t k = 0; k < K; ++k) {
                            const double term = double(a[static_cast<std::size_t>(i * lda + k)]) *
                                                b[static_cast<std::size_t>(k * ldb + j)];
                            ref += term;
                            mag += std::abs(term);
                        }
                        ASSERT_NEAR(got, ref, 6e-8 * double(K + 1) * mag + 1e-30)
                            << M << "x" << N << "x" << K << " at " << i << "," << j;
                    }
                }
            }
}

// The vector conversions against the scalar ones of dtype.hpp: every fp16 / bf16 bit pattern
// widened, and fp32 values around every rounding case (ties, carries into the exponent,
// subnormal results, overflow to inf, zeros, infinities) narrowed, at every lane position.
TEST(Avx2Kernels, VectorConversionsMatchScalar) {
    if (!opennsa::detail::cpu_has_avx2()) GTEST_SKIP() << "no AVX2";
    namespace d = opennsa::detail;
    std::vector<std::uint16_t> all(65536 + 5);  // + 5: a tail past the last full vector
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = static_cast<std::uint16_t>(i);
    std::vector<float> wide(all.size());
    for (DType t : {DType::bf16, DType::f16}) {
        d::avx2::widen(t, all.data(), wide.data(), static_cast<std::int64_t>(all.size()));
        for (std::size_t i = 0; i < all.size(); ++i) {
            const float ref = t == DType::bf16 ? d::bf16_to_f32(all[i]) : d::f16_to_f32(all[i]);
            if (std::isnan(ref))
                ASSERT_TRUE(std::isnan(wide[i])) << std::hex << all[i];
            else
                ASSERT_EQ(std::bit_cast<std::uint32_t>(wide[i]), std::bit_cast<std::uint32_t>(ref)) << std::hex << all[i];
        }
    }
    std::vector<float> x;
    std::mt19937_64 rng(case_seed(78));
    for (int i = 0; i < 200000; ++i) x.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(rng())));
    for (std::uint32_t base : {0x3f800000u, 0x477fe000u, 0x477ff000u, 0x38800000u, 0x33000000u, 0x387fc000u, 0x7f7f8000u,
                               0x00000001u, 0x7f800000u, 0x00000000u})
        for (std::uint32_t off = 0; off < 0x3000u; off += 0x7fu)
            for (std::uint32_t sign : {0u, 0x80000000u}) {
                x.push_back(std::bit_cast<float>(sign | (base + off)));
                x.push_back(std::bit_cast<float>(sign | (base - off)));
            }
    x.push_back(1.0f);  // odd count: a tail
    std::vector<std::uint16_t> narrow(x.size());
    for (DType t : {DType::bf16, DType::f16}) {
        d::avx2::narrow(t, x.data(), narrow.data(), static_cast<std::int64_t>(x.size()));
        for (std::size_t i = 0; i < x.size(); ++i) {
            const std::uint16_t ref = t == DType::bf16 ? d::f32_to_bf16(x[i]) : d::f32_to_f16(x[i]);
            if (std::isnan(x[i])) {
                const float back = t == DType::bf16 ? d::bf16_to_f32(narrow[i]) : d::f16_to_f32(narrow[i]);
                ASSERT_TRUE(std::isnan(back)) << std::hex << std::bit_cast<std::uint32_t>(x[i]);
            } else {
                ASSERT_EQ(narrow[i], ref) << opennsa::dtype_name(t) << " of " << std::hex << std::bit_cast<std::uint32_t>(x[i]);
            }
        }
    }
}

TEST(Avx2Kernels, ExpIsAccurate) {
    if (!opennsa::detail::cpu_has_avx2()) GTEST_SKIP() << "no AVX2";
    std::vector<float> x;
    for (float v = -87.0f; v <= 88.0f; v += 0.0137f) x.push_back(v);
    for (float v : {0.0f, -0.0f, 1e-8f, -1e-8f, 0.5f, -0.5f, 1.0f, -1.0f, 88.5f}) x.push_back(v);
    std::vector<float> y(x.size());
    opennsa::detail::avx2::exp(x.data(), y.data(), static_cast<std::int64_t>(x.size()));
    double worst = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const double ref = std::exp(double(x[i]));
        worst = std::max(worst, std::abs(y[i] - ref) / ref);
    }
    EXPECT_LT(worst, 4e-7) << "max relative error";
    // Far below the clamp: tiny, never NaN or negative (the passes mask invisible keys themselves).
    const float low[3] = {-100.0f, -1e30f, -std::numeric_limits<float>::infinity()};
    float out[3];
    opennsa::detail::avx2::exp(low, out, 3);
    for (float v : out) EXPECT_TRUE(v >= 0.0f && v < 1e-37f) << v;
    // Same bits on every call, whatever the position in a vector.
    std::vector<float> shifted(x.size());
    opennsa::detail::avx2::exp(x.data() + 3, shifted.data(), static_cast<std::int64_t>(x.size()) - 3);
    for (std::size_t i = 3; i < x.size(); ++i) ASSERT_EQ(shifted[i - 3], y[i]);
}
#endif
