// The library against the fp64 reference: a property sweep over random shapes for every dtype,
// and the edge cases SPEC.md names. Outputs are poisoned before every call and must be written
// everywhere (and nowhere outside their views).
#include <gtest/gtest.h>

#include <functional>

#include "kernels/dispatch.hpp"
#include "ops/select_attention/cases.hpp"

using namespace nsa_test;
using opennsa::DType;

namespace {

sel::Problem forward_problem(Tensors& t) {
    return sel::validate_forward(t.forward_args(), t.params);
}

void check_forward(const Case& c) {
    SCOPED_TRACE(c.describe());
    Tensors t(c);
    opennsa::forward(t.forward_args(), t.params);
    ASSERT_TRUE(t.out.fully_written());
    ASSERT_TRUE(t.smax.fully_written());
    ASSERT_TRUE(t.ssum.fully_written());
    const auto ref = sel::reference::forward(forward_problem(t));
    EXPECT_TRUE(close(t.out.dense(), ref.out, tol_out(c.dtype), "out"));
    EXPECT_TRUE(stats_ok(t, ref));
}

void check_backward(const Case& c) {
    SCOPED_TRACE(c.describe());
    Tensors t(c);
    t.set_forward_from_reference();
    opennsa::backward(t.backward_args(), t.params);
    ASSERT_TRUE(t.dq.fully_written());
    ASSERT_TRUE(t.dk.fully_written());
    ASSERT_TRUE(t.dv.fully_written());
    const auto ref = sel::reference::backward(sel::validate_backward(t.backward_args(), t.params));
    const double tol = tol_grad(c.dtype);
    EXPECT_TRUE(close(t.dq.dense(), ref.dq, tol, "dq"));
    EXPECT_TRUE(close(t.dk.dense(), ref.dk, tol, "dk"));
    EXPECT_TRUE(close(t.dv.dense(), ref.dv, tol, "dv"));
}

Case base_case(DType dtype, std::uint64_t salt) {
    Case c;
    c.dtype = dtype;
    c.seed = case_seed(salt);
    return c;
}

class Sweep : public ::testing::TestWithParam<DType> {};

}  // namespace

TEST_P(Sweep, RandomShapesMatchReference) {
    std::mt19937_64 rng(case_seed(1000 + static_cast<int>(GetParam())));
    for (int i = 0; i < 48; ++i) {
        const Case c = random_case(rng, GetParam());
        check_forward(c);
        check_backward(c);
        if (HasFatalFailure()) return;
    }
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, Sweep, ::testing::Values(DType::f16, DType::bf16, DType::f32, DType::f64),
                         [](const auto& info) { return std::string(opennsa::dtype_name(info.param)); });

class Edge : public ::testing::TestWithParam<DType> {};

TEST_P(Edge, NoQueryTokensStillZeroesKeyGradients) {
    Case c = base_case(GetParam(), 1);
    c.q_lens = {0};
    c.kv_lens = {30};
    check_forward(c);
    check_backward(c);
}

TEST_P(Edge, OnlyPaddingRowsNeedNoWorkspace) {
    for (std::int64_t pad : {0, 5}) {  // T1 = 0, and T1 = 5 rows that are all padding
        Case c = base_case(GetParam(), 10);
        c.q_lens = {0, 0};
        c.kv_lens = {20, 11};
        c.varlen = true;
        c.pad_q = pad;
        c.pad_kv = 2;
        Tensors t(c);
        EXPECT_EQ(opennsa::forward_workspace_bytes(t.forward_args(), t.params), 0u);
        EXPECT_EQ(opennsa::backward_workspace_bytes(t.backward_args(), t.params), 0u);
        check_forward(c);
        check_backward(c);
    }
}

TEST_P(Edge, NoKeyTokens) {
    Case c = base_case(GetParam(), 2);
    c.q_lens = {9};
    c.kv_lens = {0};
    check_forward(c);
    check_backward(c);
}

TEST_P(Edge, EverySlotEmpty) {
    Case c = base_case(GetParam(), 3);
    c.empty_slot = 1.0;
    check_forward(c);
    check_backward(c);
}

TEST_P(Edge, EmptyBatchesAndPaddingRows) {
    Case c = base_case(GetParam(), 4);
    c.q_lens = {0, 13, 0, 21, 0};
    c.kv_lens = {5, 17, 0, 30, 0};
    c.pad_q = 4;
    c.pad_kv = 3;
    c.varlen = true;
    check_forward(c);
    check_backward(c);
}

TEST_P(Edge, HotBlocksEveryQuerySelects) {
    // All queries pick block 0 and their own local block (NSA's usual pattern) plus duplicates.
    Case c = base_case(GetParam(), 5);
    c.q_lens = {200};
    c.kv_lens = {200};
    c.bs = 16;
    c.C = 3;
    c.empty_slot = 0;
    Tensors t(c);
    for (std::int64_t i = 0; i < 200; ++i)
        for (std::int64_t n = 0; n < c.N2; ++n) {
            t.topk.set(i, n, 0, 0);
            t.topk.set(i, n, 1, static_cast<double>(i / 16));
            t.topk.set(i, n, 2, 0);
        }
    opennsa::forward(t.forward_args(), t.params);
    const auto ref = sel::reference::forward(forward_problem(t));
    EXPECT_TRUE(close(t.out.dense(), ref.out, tol_out(c.dtype), "out"));
    t.set_forward_from_reference();
    opennsa::backward(t.backward_args(), t.params);
    const auto g = sel::reference::backward(sel::validate_backward(t.backward_args(), t.params));
    EXPECT_TRUE(close(t.dk.dense(), g.dk, tol_grad(c.dtype), "dk"));
    EXPECT_TRUE(close(t.dv.dense(), g.dv, tol_grad(c.dtype), "dv"));
    EXPECT_TRUE(close(t.dq.dense(), g.dq, tol_grad(c.dtype), "dq"));
}

TEST_P(Edge, LargeGroupAndUnequalHeadDims) {
    Case c = base_case(GetParam(), 6);
    c.N1 = 33;
    c.N2 = 1;
    c.Dk = 96;
    c.Dv = 40;
    c.q_lens = {40};
    c.kv_lens = {40};
    check_forward(c);
    check_backward(c);
}

TEST_P(Edge, BlockSizeOneAndSingleSlot) {
    Case c = base_case(GetParam(), 7);
    c.bs = 1;
    c.C = 1;
    check_forward(c);
    check_backward(c);
}

TEST_P(Edge, CausalMaskIsPositionalForFutureBlocks) {
    // Selections that name future blocks: only positions p <= i count, in both directions.
    Case c = base_case(GetParam(), 8);
    c.beyond_causal = 1.0;
    c.q_lens = {50};
    c.kv_lens = {50};
    check_forward(c);
    check_backward(c);
    c.causal = false;
    check_forward(c);
    check_backward(c);
}

TEST_P(Edge, NonContiguousViews) {
    Case c = base_case(GetParam(), 9);
    c.transposed = true;
    c.q_lens = {12, 30};
    c.kv_lens = {40, 25};
    c.varlen = true;
    check_forward(c);
    check_backward(c);
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, Edge, ::testing::Values(DType::f16, DType::bf16, DType::f32, DType::f64),
                         [](const auto& info) { return std::string(opennsa::dtype_name(info.param)); });

TEST(Ops, CallerWorkspaceIsUsedAndGivesTheSameBits) {
    Case c = base_case(DType::bf16, 20);
    c.q_lens = {70};
    c.kv_lens = {70};
    Tensors a(c), b(c);
    const std::size_t need = opennsa::forward_workspace_bytes(a.forward_args(), a.params);
    EXPECT_GT(need, 0u);
    // 64-byte aligned, as the API asks; a misaligned span is not used (the library allocates).
    std::vector<std::byte> storage(need + 64 + 1);
    auto* aligned = reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(storage.data()) + 63) & ~std::uintptr_t{63});
    auto touched = [&] {
        for (std::byte x : storage)
            if (x != std::byte{0}) return true;
        return false;
    };
    opennsa::forward(a.forward_args(), a.params, std::span<std::byte>(aligned + 1, need));
    EXPECT_TRUE(a.out.fully_written());
    EXPECT_FALSE(touched()) << "a misaligned workspace was used";
    a.poison_outputs();
    opennsa::forward(a.forward_args(), a.params, std::span<std::byte>(aligned, need));
    EXPECT_TRUE(touched()) << "the caller's workspace was not used";
    opennsa::forward(b.forward_args(), b.params);
    EXPECT_EQ(a.out.bytes, b.out.bytes);
    a.poison_outputs();
    b.poison_outputs();
    a.set_forward_from_reference();
    b.set_forward_from_reference();
    std::vector<std::byte> wsb(opennsa::backward_workspace_bytes(a.backward_args(), a.params));
    opennsa::backward(a.backward_args(), a.params, wsb);
    opennsa::backward(b.backward_args(), b.params);
    EXPECT_EQ(a.dq.bytes, b.dq.bytes);
    EXPECT_EQ(a.dk.bytes, b.dk.bytes);
    EXPECT_EQ(a.dv.bytes, b.dv.bytes);
}

// Runs body(0) on the FMA tiles and, where the CPU has AVX512_BF16, body(1) on the bf16 dot
// tiles, then restores the default.
static void for_each_tile_kind(const std::function<void(int)>& body) {
    for (int mode : {0, 1}) {
        if (mode == 1 && !opennsa::detail::cpu_has_avx512_bf16()) continue;
        opennsa::detail::set_bf16_dot_for_testing(mode);
        body(mode);
    }
    opennsa::detail::set_bf16_dot_for_testing(-1);
}

// Where the CPU has AVX512_BF16, bf16 problems compute S = Q K^T and dP = dO V^T on the bf16 dot
// tiles. Both tile kinds must meet the reference on random problems, and the switch must reach the
// kernels: their bits differ somewhere in the forward's statistics and in the gradients.
TEST(Bf16Dot, BothTileKindsMatchReference) {
    if (!opennsa::detail::cpu_has_avx512_bf16()) GTEST_SKIP() << "no AVX512_BF16";
    std::mt19937_64 rng(case_seed(4242));
    bool forward_differs = false, backward_differs = false;
    for (int i = 0; i < 16; ++i) {
        const Case c = random_case(rng, DType::bf16);
        std::vector<unsigned char> out[2], grads[2];
        for (int mode : {0, 1}) {
            opennsa::detail::set_bf16_dot_for_testing(mode);
            check_forward(c);
            check_backward(c);
            Tensors t(c);
            opennsa::forward(t.forward_args(), t.params);
            out[mode] = t.smax.bytes;  // fp32: shows a changed score where the bf16 out may not
            out[mode].insert(out[mode].end(), t.ssum.bytes.begin(), t.ssum.bytes.end());
            t.set_forward_from_reference();
            opennsa::backward(t.backward_args(), t.params);
            grads[mode] = t.dq.bytes;
            grads[mode].insert(grads[mode].end(), t.dk.bytes.begin(), t.dk.bytes.end());
        }
        forward_differs = forward_differs || out[0] != out[1];
        backward_differs = backward_differs || grads[0] != grads[1];
    }
    opennsa::detail::set_bf16_dot_for_testing(-1);
    EXPECT_TRUE(forward_differs) << "the bf16 dot setting did not change the forward";
    EXPECT_TRUE(backward_differs) << "the bf16 dot setting did not change the backward";
}

// A row that sees one key has P = 1 and o = v, so dP - D cancels exactly and dq, dk are exactly
// zero, as in the reference: D = dO . o must be computed by the same chain as dP = dO . v on
// either tile kind.
TEST(Bf16Dot, OneVisibleKeyGivesExactlyZeroGradients) {
    for_each_tile_kind([&](int mode) {
        for (DType dtype : {DType::bf16, DType::f32}) {
            Case c = base_case(dtype, 31);
            c.q_lens = std::vector<std::int64_t>(8, 1);  // 8 batches of one token and one key
            c.kv_lens = c.q_lens;
            c.varlen = true;
            c.N1 = 8;
            c.C = 1;
            c.Dk = 40;
            c.Dv = 136;
            c.empty_slot = c.duplicate = c.beyond_causal = 0;
            SCOPED_TRACE(c.describe());
            Tensors t(c);
            t.set_forward_from_reference();
            opennsa::backward(t.backward_args(), t.params);
            for (double x : t.dq.dense()) ASSERT_EQ(x, 0.0) << "dq, bf16 dot " << mode;
            for (double x : t.dk.dense()) ASSERT_EQ(x, 0.0) << "dk, bf16 dot " << mode;
        }
    });
}

// A NaN in the value of a key a row does not see never reaches the row, also where the bf16 dot
// pairs that key with one the row sees: row 20 of the local block [16, 32) sees keys 16..20 (an odd
// count), and key 21, the second half of the pair (20, 21), holds NaN in v. Every row selects its
// own block; out must be NaN exactly where the reference's is, and close elsewhere.
TEST(Bf16Dot, AnInvisibleKeyPairedWithAVisibleOneNeverReachesTheRow) {
    for_each_tile_kind([&](int mode) {
        for (DType dtype : {DType::bf16, DType::f32}) {
            Case c = base_case(dtype, 32);
            c.q_lens = {40};
            c.kv_lens = {40};
            c.bs = 16;
            c.C = 1;
            SCOPED_TRACE(c.describe() + " bf16 dot " + std::to_string(mode));
            Tensors t(c);
            for (std::int64_t i = 0; i < 40; ++i)
                for (std::int64_t n = 0; n < c.N2; ++n) t.topk.set(i, n, 0, static_cast<double>(i / 16));
            for (std::int64_t n = 0; n < c.N2; ++n) t.v.set(21, n, 0, NAN);
            opennsa::forward(t.forward_args(), t.params);
            const auto ref = sel::reference::forward(forward_problem(t));
            std::vector<double> got = t.out.dense(), want = ref.out;
            std::size_t nans = 0;
            for (std::size_t i = 0; i < got.size(); ++i) {
                ASSERT_EQ(std::isnan(got[i]), std::isnan(want[i])) << "element " << i;
                if (std::isnan(want[i])) {
                    ++nans;
                    got[i] = want[i] = 0.0;
                }
            }
            EXPECT_GT(nans, 0u) << "no row saw the NaN (test is vacuous)";
            EXPECT_TRUE(close(got, want, tol_out(dtype), "out"));
        }
    });
}
