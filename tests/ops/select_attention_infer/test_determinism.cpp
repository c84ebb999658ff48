// Bitwise reproducibility: thread counts 1, 2 and 3 give the same output bytes, with tasks by row
// (many rows) and by (row, chunk) (batch 1, split-K); a batch's rows have the same bits whether it
// is decoded alone or with others (the folds do not depend on which kind of task ran); pages
// scattered in random order give the same bits as contiguous ones.
#include <gtest/gtest.h>

#include "ops/select_attention_infer/cases.hpp"

using namespace nsa_test;
using opennsa::DType;

namespace {

std::vector<unsigned char> run(SelInferTensors& t, int threads) {
    opennsa::set_num_threads(threads);
    t.out.poison();
    opennsa::select_attention_infer(t.args(), t.params);
    return t.out.bytes;
}

SelInferCase decode_case(DType dtype, std::int64_t B) {
    SelInferCase c;
    c.dtype = dtype;
    c.N1 = 16;
    c.N2 = 2;
    c.Dk = 40;
    c.Dv = 24;
    c.sel = 16;
    c.k = 12;
    c.P = 32;
    c.kv_lens.clear();
    c.q_lens.clear();
    for (std::int64_t b = 0; b < B; ++b) {
        c.kv_lens.push_back(500 + 37 * b);
        c.q_lens.push_back(1);
    }
    c.seed = case_seed(static_cast<std::uint64_t>(dtype) * 16 + static_cast<std::uint64_t>(B));
    return c;
}

}  // namespace

TEST(SelectAttentionInferDeterminism, SameBitsForEveryThreadCount) {
    for (DType dtype : {DType::bf16, DType::f16, DType::f32})
        for (std::int64_t B : {1, 33}) {  // split-K tasks, row tasks (66 rows)
            SelInferTensors t(decode_case(dtype, B));
            const auto one = run(t, 1);
            for (int threads : {2, 3, 1}) EXPECT_EQ(run(t, threads), one) << "threads " << threads << " " << t.c.describe();
        }
    opennsa::set_num_threads(0);
}

TEST(SelectAttentionInferDeterminism, ABatchAloneHasTheBitsItHasAmongOthers) {
    // 40 batches run as row tasks; batch 7 alone runs as (row, chunk) tasks: the same folds.
    SelInferCase many = decode_case(DType::bf16, 40);
    many.shuffle_pages = false;
    SelInferTensors all(many);
    all.out.poison();
    opennsa::select_attention_infer(all.args(), all.params);
    const std::int64_t b = 7;
    SelInferCase one = many;
    one.kv_lens = {many.kv_lens[b]};
    one.q_lens = {1};
    one.spare_pages = 0;
    SelInferTensors alone(one);
    // Copy batch 7's query, selection and cache rows into the single-batch problem.
    for (std::int64_t h = 0; h < many.N1; ++h)
        for (std::int64_t e = 0; e < many.Dk; ++e) alone.q.set({0, 0, h, e}, all.q.get({b, 0, h, e}));
    for (std::int64_t n2 = 0; n2 < many.N2; ++n2)
        for (std::int64_t j = 0; j < many.k; ++j) alone.set_slot(0, 0, n2, j, std::int32_t(all.topk.get({b, 0, n2, j})));
    for (std::size_t pg = 0; pg < alone.pages[0].size(); ++pg)
        for (std::int64_t r = 0; r < many.P; ++r)
            for (std::int64_t e = 0; e < many.N2 * many.Dk; ++e) {
                alone.k.set({alone.pages[0][pg], r, e}, all.k.get({all.pages[b][pg], r, e}));
                if (e < many.N2 * many.Dv) alone.v.set({alone.pages[0][pg], r, e}, all.v.get({all.pages[b][pg], r, e}));
            }
    EXPECT_GT(opennsa::select_attention_infer_workspace_bytes(alone.args(), alone.params), 0u) << "split-K expected";
    EXPECT_EQ(opennsa::select_attention_infer_workspace_bytes(all.args(), all.params), 0u) << "row tasks expected";
    alone.out.poison();
    opennsa::select_attention_infer(alone.args(), alone.params);
    for (std::int64_t h = 0; h < many.N1; ++h)
        for (std::int64_t e = 0; e < many.Dv; ++e)
            ASSERT_EQ(alone.out.get({0, 0, h, e}), all.out.get({b, 0, h, e})) << h << ' ' << e;
}

TEST(SelectAttentionInferDeterminism, ScatteredPagesGiveTheBitsOfContiguousOnes) {
    for (bool rank4 : {false, true}) {
        SelInferCase c = decode_case(DType::bf16, 3);
        c.cache_rank4 = rank4;
        c.shuffle_pages = false;
        c.spare_pages = 0;
        SelInferTensors contiguous(c);
        c.shuffle_pages = true;
        c.spare_pages = 5;
        SelInferTensors scattered(c);
        // The same logical contents: copy every cached row to its scattered page.
        for (std::int64_t b = 0; b < c.B(); ++b)
            for (std::size_t pg = 0; pg < contiguous.pages[b].size(); ++pg)
                for (std::int64_t r = 0; r < c.P; ++r)
                    for (std::int64_t n2 = 0; n2 < c.N2; ++n2)
                        for (std::int64_t e = 0; e < c.Dk; ++e) {
                            auto at = [&](std::int64_t page) {
                                return rank4 ? std::vector<std::int64_t>{page, r, n2, e}
                                             : std::vector<std::int64_t>{page, r, n2 * c.Dk + e};
                            };
                            auto atv = [&](std::int64_t page) {
                                return rank4 ? std::vector<std::int64_t>{page, r, n2, e}
                                             : std::vector<std::int64_t>{page, r, n2 * c.Dv + e};
                            };
                            scattered.k.set(at(scattered.pages[b][pg]), contiguous.k.get(at(contiguous.pages[b][pg])));
                            if (e < c.Dv)
                                scattered.v.set(atv(scattered.pages[b][pg]), contiguous.v.get(atv(contiguous.pages[b][pg])));
                        }
        std::copy(contiguous.q.bytes.begin(), contiguous.q.bytes.end(), scattered.q.bytes.begin());
        std::copy(contiguous.topk.bytes.begin(), contiguous.topk.bytes.end(), scattered.topk.bytes.begin());
        EXPECT_EQ(run(scattered, 2), run(contiguous, 2)) << "rank4 " << rank4;
    }
    opennsa::set_num_threads(0);
}
