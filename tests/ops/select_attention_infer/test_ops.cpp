// The library against the float64 reference (docs/spec/decoding.md section 3): random shapes,
// layouts (BSND, BSH, TND), batches, draft tokens, paged caches (shuffled pages, spare pages and
// rows past each length filled with NaN), selections with empty and duplicate slots, strided views,
// both compute paths; named edge cases. Every output element must be written, rows s >= Q_b must
// be zero, and the inputs (caches included) must stay bitwise unchanged.
#include <gtest/gtest.h>

#include <cstdlib>

#include "ops/select_attention_infer/cases.hpp"

using namespace nsa_test;
using opennsa::DType;

namespace {

// Runs `body` with OPENNSA_KERNEL=portable, then restores the default path.
template <class Body>
void on_portable_path(Body&& body) {
    ::setenv("OPENNSA_KERNEL", "portable", 1);
    body();
    ::unsetenv("OPENNSA_KERNEL");
}

SelInferCase base_case(DType dtype) {
    SelInferCase c;
    c.dtype = dtype;
    c.N1 = 8;
    c.N2 = 2;
    c.Dk = 24;
    c.Dv = 16;
    c.sel = 8;
    c.k = 5;
    c.P = 16;
    c.kv_lens = {70, 33, 128};
    c.q_lens = {1, 1, 1};
    c.seed = case_seed(static_cast<std::uint64_t>(dtype) + 100);
    return c;
}

void check(const SelInferCase& c) {
    SCOPED_TRACE(c.describe());
    SelInferTensors t(c);
    EXPECT_TRUE(run_and_check(t));
}

}  // namespace

TEST(SelectAttentionInfer, RandomCasesEveryDtype) {
    std::mt19937_64 rng(case_seed(1));
    for (DType dtype : {DType::bf16, DType::f16, DType::f32, DType::f64})
        for (int i = 0; i < 12; ++i) check(random_sel_infer_case(rng, dtype));
}

TEST(SelectAttentionInfer, RandomCasesPortablePath) {
    std::mt19937_64 rng(case_seed(2));
    on_portable_path([&] {
        for (DType dtype : {DType::bf16, DType::f16, DType::f32})
            for (int i = 0; i < 6; ++i) check(random_sel_infer_case(rng, dtype));
    });
}

TEST(SelectAttentionInfer, EveryLayoutAndCacheRank) {
    for (DType dtype : {DType::bf16, DType::f16})
        for (const char* layout : {"BSND", "BSH", "TND"})
            for (bool rank4 : {false, true})
                for (int storage : {0, 1, 2}) {
                    SelInferCase c = base_case(dtype);
                    c.layout = layout;
                    c.cache_rank4 = rank4;
                    c.storage = storage;
                    check(c);
                }
}

TEST(SelectAttentionInfer, DraftTokensSeeACausalPrefix) {
    // Batch 0: 4 draft tokens whose last block is partly hidden from the earlier ones; batch 1:
    // tokens whose selection names a block none of its positions is visible to.
    for (const char* layout : {"BSND", "BSH", "TND"}) {
        SelInferCase c = base_case(DType::f32);
        c.layout = layout;
        c.kv_lens = {67, 41};
        c.q_lens = {4, 2};
        c.Q = 5;  // one more row than the longest batch (BSND / BSH): zeros
        c.empty_slot = 0;
        SelInferTensors t(c);
        for (std::int64_t s = 0; s < 4; ++s) t.set_slot(0, s, 0, 0, 8);  // positions 64..66
        t.set_slot(1, 0, 1, 2, 5);  // positions 40..: token 0 sees p < 40, so nothing of block 5
        SCOPED_TRACE(c.describe());
        EXPECT_TRUE(run_and_check(t));
    }
}

TEST(SelectAttentionInfer, EmptyAndDuplicateSlots) {
    SelInferCase c = base_case(DType::bf16);
    SelInferTensors t(c);
    for (std::int64_t j = 0; j < c.k; ++j) t.set_slot(0, 0, 1, j, -1);  // sees nothing: zeros
    t.set_slot(1, 0, 0, 0, -1);                                          // -1 first, valid later
    for (std::int64_t j = 0; j < c.k; ++j) t.set_slot(2, 0, 0, j, 3);    // one block named k times
    EXPECT_TRUE(run_and_check(t));
    // Rows that see nothing are exactly zero.
    const std::vector<double> out = t.dense_out();
    for (std::int64_t h = c.N1 / 2; h < c.N1; ++h)
        for (std::int64_t e = 0; e < c.Dv; ++e) EXPECT_EQ(out[std::size_t(h * c.Dv + e)], 0.0);
}

TEST(SelectAttentionInfer, BlockAndPageGeometries) {
    struct Geometry {
        std::int64_t sel, P;
    };
    // Pages smaller, larger, not dividing blocks; one-token pages and blocks; a block longer than
    // every sequence.
    for (Geometry g : {Geometry{8, 3}, Geometry{64, 128}, Geometry{24, 16}, Geometry{1, 1}, Geometry{1000, 7},
                       Geometry{std::int64_t{1} << 40, 32}}) {
        SelInferCase c = base_case(DType::f16);
        c.sel = g.sel;
        c.P = g.P;
        check(c);
    }
}

TEST(SelectAttentionInfer, ManyHeadsAndOddDims) {
    for (std::int64_t G : {1, 5, 16, 33}) {
        SelInferCase c = base_case(DType::bf16);
        c.N2 = G > 16 ? 1 : 2;
        c.N1 = G * c.N2;
        c.Dk = G == 5 ? 1 : 40;
        c.Dv = 1;
        if (G == 16) c.Dv = 33;
        check(c);
    }
}

TEST(SelectAttentionInfer, LongSelectionsSplitIntoSubBlocks) {
    // Rows seeing several hundred keys (sub-blocks of 128 folded), few rows (tasks by chunk) and
    // many rows (tasks by row).
    for (std::int64_t B : {1, 40}) {
        SelInferCase c = base_case(DType::f32);
        c.sel = 200;
        c.k = 6;
        c.P = 64;
        c.kv_lens.assign(static_cast<std::size_t>(B), 1500);
        c.q_lens.assign(static_cast<std::size_t>(B), 1);
        c.empty_slot = 0.05;
        check(c);
    }
}

TEST(SelectAttentionInfer, CallerWorkspace) {
    SelInferCase c = base_case(DType::bf16);
    c.kv_lens = {300};
    c.q_lens = {1};
    c.sel = 64;  // 2 slots a chunk: 4 chunks
    c.k = 8;
    SelInferTensors t(c);
    const std::size_t need = opennsa::select_attention_infer_workspace_bytes(t.args(), t.params);
    EXPECT_GT(need, 0u) << "one row: tasks by chunk, partials in the workspace";
    std::vector<std::byte> ws(need + 64);
    auto* base = reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(ws.data()) + 63) & ~std::uintptr_t{63});
    t.out.poison();
    opennsa::select_attention_infer(t.args(), t.params, std::span<std::byte>(base, need));
    const std::vector<unsigned char> with_ws = t.out.bytes;
    EXPECT_TRUE(run_and_check(t));
    EXPECT_EQ(t.out.bytes, with_ws);
}

TEST(SelectAttentionInfer, NoBatchesWritesNothingAndSucceeds) {
    SelInferCase c = base_case(DType::bf16);
    c.kv_lens = {};
    c.q_lens = {};
    c.spare_pages = 2;
    for (const char* layout : {"BSND", "TND"}) {
        c.layout = layout;
        SelInferTensors t(c);
        EXPECT_EQ(opennsa::select_attention_infer_workspace_bytes(t.args(), t.params), 0u);
        opennsa::select_attention_infer(t.args(), t.params);
    }
}

TEST(SelectAttentionInfer, NanInASeenKeyReachesOnlyItsRows) {
    SelInferCase c = base_case(DType::f32);
    c.kv_lens = {64, 64};
    c.q_lens = {1, 1};
    c.empty_slot = 0;
    c.duplicate = 0;
    SelInferTensors t(c);
    for (std::int64_t j = 0; j < c.k; ++j) t.set_slot(0, 0, 0, j, j == 0 ? 2 : -1);  // kv head 0 of batch 0: block 2
    const std::int64_t page = t.pages[0][(2 * c.sel) / c.P], r = (2 * c.sel) % c.P;
    t.k.set({page, r, 0 * c.Dk + 3}, NAN);  // rank-3 cache: head 0, element 3 of position 16
    t.out.poison();
    opennsa::select_attention_infer(t.args(), t.params);
    const std::vector<double> out = t.dense_out();
    for (std::int64_t b = 0; b < 2; ++b)
        for (std::int64_t h = 0; h < c.N1; ++h) {
            const bool sees = b == 0 && h < c.N1 / c.N2;
            for (std::int64_t e = 0; e < c.Dv; ++e)
                EXPECT_EQ(std::isnan(out[std::size_t((b * c.N1 + h) * c.Dv + e)]), sees) << b << ' ' << h << ' ' << e;
        }
}
