// The compress attention infer against the float64 reference: a random sweep over shapes, layouts,
// page sizes, lengths and the multi-token rule, and named edge cases, on every compute path and
// dtype. Outputs are poisoned before each call; every element must be written, nothing outside the
// views, and the inputs (the caches included) stay bitwise unchanged.
#include <gtest/gtest.h>

#include <cstdlib>

#include "kernels/dispatch.hpp"
#include "ops/compress_attention_infer/avx2.hpp"
#include "ops/compress_attention_infer/cases.hpp"

using namespace nsa_test;

namespace {

struct PathParam {
    const char* path;
    DType dtype;
};

std::string param_name(const ::testing::TestParamInfo<PathParam>& info) {
    return std::string(info.param.path) + "_" + opennsa::dtype_name(info.param.dtype);
}

// Instantiated as AllPaths/..., so CI also runs them under ThreadSanitizer (its filter matches
// "Paths"); they are small enough for it.
class InferPaths : public ::testing::TestWithParam<PathParam> {
protected:
    void SetUp() override {
        if (std::string(GetParam().path) == "avx2" && !opennsa::detail::cpu_has_avx2())
            GTEST_SKIP() << "this CPU has no AVX2 + FMA";
        ::setenv("OPENNSA_KERNEL", GetParam().path, 1);
    }
    void TearDown() override { ::unsetenv("OPENNSA_KERNEL"); }

    CattnInferCase base(std::uint64_t salt) const {
        CattnInferCase c;
        c.dtype = GetParam().dtype;
        c.seed = case_seed(salt);
        return c;
    }
};

// Runs the case (poisoned outputs), checks against the reference and that no input changed.
void check_case(const CattnInferCase& c, bool exact_topk = false) {
    SCOPED_TRACE(c.describe());
    CattnInferTensors t(c);
    const std::vector<unsigned char> q0 = t.q.bytes, k0 = t.key.bytes, v0 = t.value.bytes;
    const std::vector<std::int32_t> table0 = t.table;
    opennsa::compress_attention_infer(t.args(), t.params);
    const auto ref = cai::reference::forward(t.problem());
    EXPECT_TRUE(outputs_ok(t, ref));
    if (exact_topk) {
        EXPECT_TRUE(topk_ok(t, ref, true));
    }
    EXPECT_TRUE(t.q.bytes == q0 && t.key.bytes == k0 && t.value.bytes == v0 && t.table == table0)
        << "an input changed";
}

}  // namespace

TEST_P(InferPaths, RandomCasesMatchTheReference) {
    std::mt19937_64 rng(case_seed(1));
    for (int i = 0; i < 40; ++i) check_case(random_cattn_infer_case(rng, GetParam().dtype));
}

TEST_P(InferPaths, DecodeStepOfTheBenchmarkShape) {
    // G = 16, Dk = 192, Dv = 128, l = 32, d = 16, l' = 64, k = 16, one token per batch, lengths that
    // cross several key chunks of the AVX2 pass.
    CattnInferCase c = base(2);
    c.N1 = 32;
    c.N2 = 2;
    c.Dk = 192;
    c.Dv = 128;
    c.l = 32;
    c.d = 16;
    c.sel = 64;
    c.k = 16;
    c.P = 128;
    c.c_lens = {compressed_tokens(9000, 32, 16), compressed_tokens(100, 32, 16), compressed_tokens(4097, 32, 16)};
    c.q_lens = {1, 1, 1};
    check_case(c);
}

TEST_P(InferPaths, DraftTokensFollowTheMultiTokenRule) {
    CattnInferCase c = base(3);
    c.l = 8;
    c.d = 4;
    c.sel = 16;
    c.k = 5;
    c.P = 16;
    c.mask = c.pass_q_lens = true;
    c.q_lens = {4, 1, 3};
    c.raw_lens = {1200, 40, 9};  // batch 2: the first draft token sees nothing, the others its one token
    c.c_lens = {compressed_tokens(1200, 8, 4), compressed_tokens(40, 8, 4), compressed_tokens(9, 8, 4)};
    check_case(c);
    c.bsnd = true;
    c.extra_q = 1;
    check_case(c);
}

TEST_P(InferPaths, DraftTokensWithoutAMaskSeeEverything) {
    CattnInferCase c = base(4);
    c.pass_q_lens = true;
    c.q_lens = {3, 2};
    c.c_lens = {30, 7};
    c.raw_lens = {500, 5};  // not read without a mask
    check_case(c);
}

TEST_P(InferPaths, EmptyCachesAndShortSequences) {
    // C_b = 0: output 0, every slot -1; NS_b = 1 and 2; k > NS_b everywhere.
    CattnInferCase c = base(5);
    c.k = 9;
    c.c_lens = {0, 1, 3, 0, 5};
    c.q_lens = {1, 1, 1, 1, 1};
    check_case(c, true);
    CattnInferCase none = base(6);
    none.c_lens = {0, 0};
    none.q_lens = {1, 1};
    none.spare_pages = 0;  // an empty cache, numBlocks = 0
    check_case(none, true);
    CattnInferCase no_batch = base(7);
    no_batch.c_lens = {};
    no_batch.q_lens = {};
    check_case(no_batch);
}

TEST_P(InferPaths, ExactTiesRankByIndex) {
    CattnInferCase c = base(8);
    c.identical_keys = true;  // equal probabilities: interior blocks score the same
    c.N1 = 2;
    c.N2 = 1;
    c.k = 7;
    c.c_lens = {40, 17};
    c.q_lens = {1, 1};
    check_case(c, true);
}

TEST_P(InferPaths, LayoutsViewsAndPagedCacheForms) {
    for (int variant = 0; variant < 4; ++variant) {
        CattnInferCase c = base(9 + static_cast<std::uint64_t>(variant));
        c.bsnd = variant & 1;
        c.transposed = true;
        c.rank4_cache = variant & 2;
        c.P = 3;
        c.pass_q_lens = true;
        c.q_lens = {2, 1};
        c.c_lens = {20, 11};
        c.extra_q = c.bsnd ? 2 : 0;
        check_case(c);
    }
}

TEST_P(InferPaths, NonFiniteInputsFollowTheReference) {
    CattnInferCase c = base(20);
    c.c_lens = {300, 12};
    c.q_lens = {1, 1};
    c.nan_query_row = 1;  // batch 1, head 0: its output row NaN, its group's scores NaN
    c.nan_key = 280;      // batch 0, kv head 0: every head of the group sees it
    check_case(c);
    CattnInferCase v = base(21);
    v.c_lens = {300};
    v.inf_value = 290;
    check_case(v);
}

TEST_P(InferPaths, HiddenNonFiniteValuesDoNotLeak) {
    // Draft tokens: an inf value in a compressed token only the last token sees stays out of the
    // earlier tokens' rows (the AVX2 pass multiplies their exact zeros by it otherwise).
    CattnInferCase c = base(22);
    c.l = 4;
    c.d = 2;
    c.sel = 8;
    c.mask = c.pass_q_lens = true;
    c.q_lens = {3};
    c.raw_lens = {600};
    c.c_lens = {compressed_tokens(600, 4, 2)};
    c.inf_value = c.c_lens[0] - 1;
    check_case(c);
}

TEST_P(InferPaths, ScatteredPagesGiveTheSameBitsAsContiguousOnes) {
    CattnInferCase c = base(23);
    c.c_lens = {700, 90, 5};
    c.q_lens = {1, 1, 1};
    c.P = 8;
    c.spare_pages = 3;
    CattnInferCase ordered = c;
    ordered.shuffled = false;
    ordered.spare_pages = 0;
    CattnInferTensors a(c), b(ordered);
    // The same compressed tokens in both caches.
    for (std::int64_t x = 0; x < c.B(); ++x)
        for (std::int64_t j = 0; j < c.c_lens[static_cast<std::size_t>(x)]; ++j) {
            const std::int64_t ra = a.cache_row(x, j), rb = b.cache_row(x, j);
            for (std::int64_t e = 0; e < c.N2 * c.Dk; ++e) b.key.set(rb / c.P, rb % c.P, e, a.key.get(ra / c.P, ra % c.P, e));
            for (std::int64_t e = 0; e < c.N2 * c.Dv; ++e)
                b.value.set(rb / c.P, rb % c.P, e, a.value.get(ra / c.P, ra % c.P, e));
        }
    b.q.bytes = a.q.bytes;
    opennsa::compress_attention_infer(a.args(), a.params);
    opennsa::compress_attention_infer(b.args(), b.params);
    EXPECT_EQ(a.out.bytes, b.out.bytes);
    EXPECT_EQ(a.topk.bytes, b.topk.bytes);
}

TEST_P(InferPaths, CallerWorkspaceGivesTheSameBits) {
    CattnInferCase c = base(24);
    c.c_lens = {600, 33};
    c.q_lens = {1, 1};
    CattnInferTensors a(c), b(c);
    const std::size_t need = opennsa::compress_attention_infer_workspace_bytes(a.args(), a.params);
    std::vector<std::byte> storage(need + 64);
    auto* aligned = reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(storage.data()) + 63) & ~std::uintptr_t{63});
    opennsa::compress_attention_infer(a.args(), a.params, std::span<std::byte>(aligned, need));
    if (std::string(GetParam().path) == "avx2" && GetParam().dtype != DType::f64) {
        EXPECT_GT(need, 0u);
        EXPECT_TRUE(std::any_of(storage.begin(), storage.end(), [](std::byte x) { return x != std::byte{0}; }))
            << "the caller's workspace was not used";
    }
    opennsa::compress_attention_infer(b.args(), b.params);
    EXPECT_EQ(a.out.bytes, b.out.bytes);
    EXPECT_EQ(a.topk.bytes, b.topk.bytes);
}

namespace {
const auto kAllPaths = ::testing::Values(PathParam{"portable", DType::f16}, PathParam{"portable", DType::bf16},
                                         PathParam{"portable", DType::f32}, PathParam{"portable", DType::f64},
                                         PathParam{"avx2", DType::f16}, PathParam{"avx2", DType::bf16},
                                         PathParam{"avx2", DType::f32});
}  // namespace

INSTANTIATE_TEST_SUITE_P(AllPaths, InferPaths, kAllPaths, param_name);
