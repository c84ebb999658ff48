// The library against the fp64 reference on every compute path (forced with OPENNSA_KERNEL): a
// sweep over random shapes for every dtype, and the edge cases docs/spec names. Outputs are
// poisoned before every call and must be written everywhere (and nowhere outside their views).
#include <gtest/gtest.h>

#include <cstdlib>

#include "kernels/dispatch.hpp"
#include "ops/compress_attention/cases.hpp"

using namespace nsa_test;
using opennsa::DType;

namespace {

void check_forward(const CompressCase& c, bool exact_topk = false) {
    SCOPED_TRACE(c.describe());
    CompressTensors t(c);
    opennsa::compress_attention(t.forward_args(), t.params);
    ASSERT_TRUE(t.out.fully_written());
    ASSERT_TRUE(t.topk_fully_written());
    ASSERT_TRUE(t.smax.fully_written());
    ASSERT_TRUE(t.ssum.fully_written());
    const auto ref = ca::reference::forward(t.forward_problem());
    EXPECT_TRUE(close_with_nan(t.out.dense(), ref.out, tol_out(c.dtype), "attentionOut"));
    EXPECT_TRUE(stats_ok(t, ref));
    EXPECT_TRUE(topk_ok(t, ref, exact_topk));
}

void check_backward(const CompressCase& c) {
    SCOPED_TRACE(c.describe());
    CompressTensors t(c);
    t.set_forward_from_reference();
    opennsa::compress_attention_backward(t.backward_args(), t.params);
    ASSERT_TRUE(t.dq.fully_written());
    ASSERT_TRUE(t.dk.fully_written());
    ASSERT_TRUE(t.dv.fully_written());
    const auto ref = ca::reference::backward(t.backward_problem());
    const double tol = tol_grad(c.dtype);
    EXPECT_TRUE(close_gradient(t.dq.dense(), ref.dq, ref.dq_abs, tol, "dq"));
    EXPECT_TRUE(close_gradient(t.dk.dense(), ref.dk, ref.dk_abs, tol, "dk"));
    EXPECT_TRUE(close_gradient(t.dv.dense(), ref.dv, ref.dv_abs, tol, "dv"));
}

void check_both(const CompressCase& c) {
    check_forward(c);
    check_backward(c);
}

struct PathParam {
    const char* path;
    DType dtype;
};

std::string param_name(const ::testing::TestParamInfo<PathParam>& info) {
    return std::string(info.param.path) + "_" + opennsa::dtype_name(info.param.dtype);
}

// Every test runs once per compute path and dtype: the random sweep (CompressAttentionSweep) and
// the edge cases (CompressAttentionPaths). Both are instantiated as AllPaths/..., so CI also runs
// them under ThreadSanitizer (its filter matches "Paths"); they are small enough for it.
class CompressAttentionOps : public ::testing::TestWithParam<PathParam> {
protected:
    void SetUp() override {
        if (std::string(GetParam().path) == "avx2" && !opennsa::detail::cpu_has_avx2())
            GTEST_SKIP() << "this CPU has no AVX2 + FMA";
        ::setenv("OPENNSA_KERNEL", GetParam().path, 1);
    }
    void TearDown() override { ::unsetenv("OPENNSA_KERNEL"); }

    CompressCase base(std::uint64_t salt) const {
        CompressCase c;
        c.dtype = GetParam().dtype;
        c.seed = case_seed(salt);
        return c;
    }
};

class CompressAttentionSweep : public CompressAttentionOps {};
class CompressAttentionPaths : public CompressAttentionOps {};

}  // namespace

TEST_P(CompressAttentionSweep, RandomShapesMatchReference) {
    std::mt19937_64 rng(case_seed(1000 + static_cast<int>(GetParam().dtype)));
    for (int i = 0; i < 40; ++i) {
        check_both(random_compress_case(rng, GetParam().dtype));
        if (HasFatalFailure()) return;
    }
}

TEST_P(CompressAttentionPaths, NoQueryTokens) {
    CompressCase c = base(1);
    c.q_lens = {0};
    c.c_lens = {12};
    CompressTensors t(c);
    EXPECT_EQ(opennsa::compress_attention_workspace_bytes(t.forward_args(), t.params), 0u);
    EXPECT_EQ(opennsa::compress_attention_backward_workspace_bytes(t.backward_args(), t.params), 0u);
    check_both(c);
}

TEST_P(CompressAttentionPaths, OnlyPaddingRows) {
    CompressCase c = base(2);
    c.q_lens = {0, 0};
    c.c_lens = {5, 3};
    c.varlen = true;
    c.pad_q = 4;
    c.pad_kv = 2;
    CompressTensors t(c);
    EXPECT_EQ(opennsa::compress_attention_workspace_bytes(t.forward_args(), t.params), 0u);
    check_both(c);
}

TEST_P(CompressAttentionPaths, NoCompressedTokens) {
    CompressCase c = base(3);
    c.q_lens = {9};
    c.c_lens = {0};
    check_both(c);
}

TEST_P(CompressAttentionPaths, EmptyAndShortBatchesAndPadding) {
    for (std::int64_t mode : {1, 2}) {
        CompressCase c = base(4);
        c.l = 5;
        c.d = 3;
        c.sel = 9;
        c.k = 4;
        c.q_lens = {0, 13, 3, 40, 0, 4};
        c.c_lens.clear();
        for (auto s : c.q_lens) c.c_lens.push_back(compressed_count(s, c.l, c.d));
        c.c_lens[4] = 3;  // compressed tokens without queries
        c.pad_q = 4;
        c.pad_kv = 3;
        c.varlen = true;
        c.sparse_mode = mode;
        c.atten_mask = mode == 1;
        check_both(c);
    }
}

TEST_P(CompressAttentionPaths, MoreSlotsThanBlocks) {
    CompressCase c = base(5);
    c.q_lens = {30, 7};
    c.c_lens = {13, 2};
    c.varlen = true;
    c.k = 9;  // NS_b = 4 and 1 with m = 4
    c.forced = 0.3;
    for (std::int64_t mode : {1, 2}) {
        c.sparse_mode = mode;
        check_forward(c);
    }
}

TEST_P(CompressAttentionPaths, ForcedBlocksComeFirst) {
    for (double density : {0.2, 0.6, 1.0}) {  // 1.0: more forced blocks than slots
        CompressCase c = base(6);
        c.q_lens = {60};
        c.c_lens = {29};
        c.k = 4;
        c.forced = density;
        c.sparse_mode = 2;
        check_forward(c);
        c.sparse_mode = 1;
        c.atten_mask = true;
        check_forward(c);
    }
}

TEST_P(CompressAttentionPaths, ExactTiesRankByIndex) {
    // Identical keys and power-of-two counts: every probability is exactly 1/C_b in fp32 and fp64,
    // so the interior blocks tie exactly and the ranking must be the reference's slot for slot.
    CompressCase c = base(7);
    c.N1 = 8;
    c.N2 = 2;
    c.l = 4;
    c.d = 2;
    c.sel = 8;
    c.k = 6;
    c.q_lens = {20, 9};
    c.c_lens = {32, 16};
    c.varlen = true;
    c.identical_keys = true;
    check_forward(c, true);
    c.forced = 0.1;
    check_forward(c, true);
    c.sparse_mode = 2;  // probabilities 1/nvis: ties within a row, checked set-wise
    check_forward(c);
}

TEST_P(CompressAttentionPaths, NaNInAQueryRowAndInAKeyRow) {
    for (std::int64_t mode : {1, 2}) {
        CompressCase c = base(8);
        c.N1 = 6;
        c.N2 = 3;
        c.q_lens = {25, 30};
        c.c_lens = {11, 14};
        c.varlen = true;
        c.sparse_mode = mode;
        c.nan_query_row = 7;
        check_both(c);
        c.nan_query_row = -1;
        c.nan_key_row = 13;  // batch 1, position 2
        check_both(c);
        c.atten_mask = mode == 1;  // masked away for some rows
        check_both(c);
        c.nan_key_row = -1;
        c.inf_value_row = 12;  // an inf value only the rows that see it may meet
        check_both(c);
    }
}

TEST_P(CompressAttentionPaths, NaNRowsLeaveBlocksTheyDoNotSeeAtZero) {
    // Even rows see only positions 0..2 (one holds a NaN key) and 12: their probabilities are NaN
    // there, blocks 0, 2, 3 score NaN, and block 1, whose taps (positions 4..8) are all masked,
    // must score 0, not NaN: ranking [0, 2, 3, 1].
    CompressCase c = base(15);
    c.q_lens = {20};
    c.c_lens = {14};
    c.nan_key_row = 1;
    c.atten_mask = true;
    c.k = 4;
    CompressTensors t(c);
    for (std::int64_t i = 0; i < t.mask.view.shape[0]; ++i)
        for (std::int64_t j = 0; j < t.mask.view.shape[1]; ++j) t.mask.set(i, j, i % 2 == 0 ? j >= 3 && j != 12 : (i + j) % 3 == 0);
    opennsa::compress_attention(t.forward_args(), t.params);
    ASSERT_TRUE(t.topk_fully_written());
    const auto ref = ca::reference::forward(t.forward_problem());
    EXPECT_TRUE(close_with_nan(t.out.dense(), ref.out, tol_out(c.dtype), "attentionOut"));
    EXPECT_TRUE(stats_ok(t, ref));
    EXPECT_TRUE(topk_ok(t, ref, true));
    EXPECT_EQ(ref.topk[static_cast<std::size_t>(4 * c.N2 * c.k + 1)], 2) << "the case does not test what it says";
}

TEST_P(CompressAttentionPaths, LargeGroupsAndUnequalHeadDims) {
    for (std::int64_t G : {16, 32}) {
        CompressCase c = base(9);
        c.N1 = G;
        c.N2 = 1;
        c.Dk = 72;
        c.Dv = 40;
        c.q_lens = {40};
        c.c_lens = {19};
        c.sparse_mode = 2;
        check_both(c);
    }
}

TEST_P(CompressAttentionPaths, ShapesOfTheNsaLayer) {
    // l = 32, d = 16, l' = 64 (m = 4, n = 2), and l, d, l' that are not multiples of 16.
    const std::int64_t shapes[][3] = {{32, 16, 64}, {7, 3, 12}, {20, 5, 35}, {5, 5, 5}, {1, 1, 3}};
    for (const auto& s : shapes) {
        CompressCase c = base(10);
        c.l = s[0];
        c.d = s[1];
        c.sel = s[2];
        c.k = 3;
        c.N1 = 4;
        c.N2 = 2;
        c.Dk = 24;
        c.Dv = 17;
        c.q_lens = {150, 61};
        c.c_lens = {compressed_count(150, c.l, c.d), compressed_count(61, c.l, c.d)};
        c.varlen = true;
        c.sparse_mode = 2;
        check_both(c);
    }
}

TEST_P(CompressAttentionPaths, HugeBlockSizesAreCheap) {
    // Any int64 l, d, l' obeying the rules: nothing is sized or looped by them (m = 2^50 here, and
    // l = 2^60 with the built-in rule, where no position sees anything).
    const std::int64_t shapes[][3] = {{3, 1, std::int64_t{1} << 50}, {std::int64_t{1} << 60, std::int64_t{1} << 59, std::int64_t{1} << 61},
                                      {5, 2, (std::int64_t{1} << 62) - 2}};
    for (const auto& s : shapes)
        for (std::int64_t mode : {1, 2}) {
            CompressCase c = base(14);
            c.l = s[0];
            c.d = s[1];
            c.sel = s[2];
            c.k = 2;
            c.q_lens = {40, 9};
            c.c_lens = {23, 5};
            c.varlen = true;
            c.sparse_mode = mode;
            c.forced = 0.3;
            CompressTensors t(c);
            EXPECT_LT(opennsa::compress_attention_workspace_bytes(t.forward_args(), t.params), std::size_t{1} << 24);
            EXPECT_LT(opennsa::compress_attention_backward_workspace_bytes(t.backward_args(), t.params), std::size_t{1} << 26);
            check_both(c);
        }
}

TEST_P(CompressAttentionPaths, ModeTwoReadsNoMaskAndEqualsTheCausalMask) {
    CompressCase c = base(11);
    c.q_lens = {50, 37};
    c.c_lens = {compressed_count(50, c.l, c.d), compressed_count(37, c.l, c.d)};
    c.varlen = true;
    c.sparse_mode = 2;
    CompressTensors plain(c);
    opennsa::compress_attention(plain.forward_args(), plain.params);
    c.atten_mask = true;  // every entry set: mode 2 must not read it
    c.mask_density = 1.0;
    CompressTensors ignored(c);
    opennsa::compress_attention(ignored.forward_args(), ignored.params);
    EXPECT_EQ(plain.out.bytes, ignored.out.bytes);
    EXPECT_EQ(plain.topk.bytes, ignored.topk.bytes);
    c.sparse_mode = 1;
    c.nsa_causal_mask = true;  // mode 1 with the mask that spells out the same rule
    CompressTensors masked(c);
    opennsa::compress_attention(masked.forward_args(), masked.params);
    EXPECT_TRUE(close(masked.out.dense(), plain.out.dense(), 0.0, "mode 1 + causal mask vs mode 2"));
    EXPECT_EQ(plain.topk.bytes, masked.topk.bytes);
    EXPECT_EQ(plain.smax.bytes, masked.smax.bytes);
}

TEST_P(CompressAttentionPaths, StatisticsLayouts) {
    CompressCase c = base(12);
    c.q_lens = {21, 0, 34};
    c.c_lens = {9, 4, 15};
    c.pad_q = 3;
    c.varlen = true;
    CompressTensors head_major(c);
    opennsa::compress_attention(head_major.forward_args(), head_major.params);
    c.token_major = true;
    CompressTensors token_major(c);
    opennsa::compress_attention(token_major.forward_args(), token_major.params);
    EXPECT_EQ(head_major.out.bytes, token_major.out.bytes);
    // Head-major flat row of (batch b, head h, position i) = qs_b * N1 + h * S1_b + i.
    std::int64_t qs = 0;
    for (std::size_t b = 0; b < c.q_lens.size(); ++b) {
        for (std::int64_t h = 0; h < c.N1; ++h)
            for (std::int64_t i = 0; i < c.q_lens[b]; ++i) {
                const std::int64_t flat = qs * c.N1 + h * c.q_lens[b] + i;
                EXPECT_EQ(head_major.smax.get(flat / c.N1, flat % c.N1, 3), token_major.smax.get(qs + i, h, 3));
                EXPECT_EQ(head_major.ssum.get(flat / c.N1, flat % c.N1, 5), token_major.ssum.get(qs + i, h, 5));
            }
        qs += c.q_lens[b];
    }
    // The backward reads either layout: the same gradients.
    head_major.poison_outputs();
    token_major.poison_outputs();
    opennsa::compress_attention(head_major.forward_args(), head_major.params);
    opennsa::compress_attention(token_major.forward_args(), token_major.params);
    opennsa::compress_attention_backward(head_major.backward_args(), head_major.params);
    opennsa::compress_attention_backward(token_major.backward_args(), token_major.params);
    EXPECT_EQ(head_major.dq.bytes, token_major.dq.bytes);
    EXPECT_EQ(head_major.dk.bytes, token_major.dk.bytes);
    EXPECT_EQ(head_major.dv.bytes, token_major.dv.bytes);
}

TEST_P(CompressAttentionPaths, CallerWorkspaceGivesTheSameBits) {
    CompressCase c = base(13);
    c.q_lens = {70};
    c.c_lens = {33};
    c.sparse_mode = 2;
    CompressTensors a(c), b(c);
    const std::size_t need = opennsa::compress_attention_workspace_bytes(a.forward_args(), a.params);
    EXPECT_GT(need, 0u);
    std::vector<std::byte> storage(need + 64);
    auto* aligned = reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(storage.data()) + 63) & ~std::uintptr_t{63});
    opennsa::compress_attention(a.forward_args(), a.params, std::span<std::byte>(aligned, need));
    EXPECT_TRUE(std::any_of(storage.begin(), storage.end(), [](std::byte x) { return x != std::byte{0}; }))
        << "the caller's workspace was not used";
    opennsa::compress_attention(b.forward_args(), b.params);
    EXPECT_EQ(a.out.bytes, b.out.bytes);
    EXPECT_EQ(a.topk.bytes, b.topk.bytes);
    std::vector<std::byte> wsb(opennsa::compress_attention_backward_workspace_bytes(a.backward_args(), a.params) + 64);
    auto* wsa = reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(wsb.data()) + 63) & ~std::uintptr_t{63});
    opennsa::compress_attention_backward(a.backward_args(), a.params, std::span<std::byte>(wsa, wsb.size() - 64));
    opennsa::compress_attention_backward(b.backward_args(), b.params);
    EXPECT_EQ(a.dq.bytes, b.dq.bytes);
    EXPECT_EQ(a.dk.bytes, b.dk.bytes);
    EXPECT_EQ(a.dv.bytes, b.dv.bytes);
}

namespace {
const auto kAllPaths = ::testing::Values(PathParam{"portable", DType::f16}, PathParam{"portable", DType::bf16},
                                         PathParam{"portable", DType::f32}, PathParam{"portable", DType::f64},
                                         PathParam{"avx2", DType::f16}, PathParam{"avx2", DType::bf16},
                                         PathParam{"avx2", DType::f32});
}  // namespace

INSTANTIATE_TEST_SUITE_P(AllPaths, CompressAttentionSweep, kAllPaths, param_name);
INSTANTIATE_TEST_SUITE_P(AllPaths, CompressAttentionPaths, kAllPaths, param_name);
