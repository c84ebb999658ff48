// The oracle and the agreement with training: the decoding operator on a paged copy of the keys
// equals the training selected attention (src/ops/select_attention, causal) at the last Q_b
// positions of each sequence given the same top-k. Float64 references agree to rounding; the
// library's two operators agree within the spec's tolerance (not bitwise: the decoding pass folds
// split-K partials, the training forward one softmax over all slots).
#include <gtest/gtest.h>

#include "ops/select_attention/problem.hpp"
#include "ops/select_attention/reference.hpp"
#include "ops/select_attention_infer/cases.hpp"

using namespace nsa_test;
using opennsa::DType;

namespace {

struct Training {
    HostTensor q, k, v, topk, out, smax, ssum;
    opennsa::Params params;
    opennsa::ForwardArgs args() { return {q.view, k.view, v.view, topk.view, {}, out.view, smax.view, ssum.view}; }
};

// The training problem holding the decoding one: batch b's L_b cached tokens are its keys and
// queries (causal), the decoding query tokens at positions L_b - Q_b + s; other query rows select
// nothing.
Training training_copy(const SelInferTensors& t) {
    const SelInferCase& c = t.c;
    std::int64_t total = 0;
    for (auto L : c.kv_lens) total += L;
    Training tr{HostTensor::make(c.dtype, total, c.N1, c.Dk, false), HostTensor::make(c.dtype, total, c.N2, c.Dk, false),
                HostTensor::make(c.dtype, total, c.N2, c.Dv, false), HostTensor::make(DType::i32, total, c.N2, c.k, false),
                HostTensor::make(c.dtype, total, c.N1, c.Dv, false), HostTensor::make(DType::f32, total, c.N1, 8, false),
                HostTensor::make(DType::f32, total, c.N1, 8, false), {}};
    tr.params.scale = t.params.scale;
    tr.params.head_num = c.N1;
    tr.params.block_size = c.sel;
    tr.params.block_count = c.k;
    tr.params.sparse_mode = opennsa::kSparseModeCausal;
    tr.params.cu_seqlens_q = std::vector<std::int64_t>{};
    std::int64_t t0 = 0;
    for (std::int64_t b = 0; b < c.B(); ++b) {
        const std::int64_t L = c.kv_lens[std::size_t(b)], Qb = c.q_lens[std::size_t(b)];
        tr.params.cu_seqlens_q->push_back(t0 + L);
        for (std::int64_t pos = 0; pos < L; ++pos) {
            const std::int64_t page = t.pages[std::size_t(b)][std::size_t(pos / c.P)], r = pos % c.P;
            for (std::int64_t n2 = 0; n2 < c.N2; ++n2) {
                for (std::int64_t e = 0; e < c.Dk; ++e) tr.k.set(t0 + pos, n2, e, t.k.get({page, r, n2 * c.Dk + e}));
                for (std::int64_t e = 0; e < c.Dv; ++e) tr.v.set(t0 + pos, n2, e, t.v.get({page, r, n2 * c.Dv + e}));
                for (std::int64_t j = 0; j < c.k; ++j) tr.topk.set(t0 + pos, n2, j, -1);
            }
            for (std::int64_t h = 0; h < c.N1; ++h)
                for (std::int64_t e = 0; e < c.Dk; ++e) tr.q.set(t0 + pos, h, e, 0.0);
        }
        for (std::int64_t s = 0; s < Qb; ++s) {
            const std::int64_t row = t0 + L - Qb + s;
            for (std::int64_t h = 0; h < c.N1; ++h)
                for (std::int64_t e = 0; e < c.Dk; ++e) tr.q.set(row, h, e, t.q.get({b, s, h, e}));
            for (std::int64_t n2 = 0; n2 < c.N2; ++n2)
                for (std::int64_t j = 0; j < c.k; ++j) tr.topk.set(row, n2, j, t.topk.get(t.topk_index(b, s, n2, j)));
        }
        t0 += L;
    }
    tr.params.cu_seqlens_kv = tr.params.cu_seqlens_q;
    return tr;
}

SelInferCase drafts(DType dtype) {
    SelInferCase c;
    c.dtype = dtype;
    c.N1 = 8;
    c.N2 = 2;
    c.Dk = 32;
    c.Dv = 16;
    c.sel = 16;
    c.k = 6;
    c.P = 24;
    c.kv_lens = {150, 77, 260};
    c.q_lens = {3, 1, 4};
    c.duplicate = 0.2;
    c.seed = case_seed(static_cast<std::uint64_t>(dtype) + 40);
    return c;
}

// Training rows of the decoding tokens, in the decoding output's dense order.
std::vector<double> decoding_rows(const SelInferTensors& t, const std::vector<double>& training_dense) {
    const SelInferCase& c = t.c;
    std::vector<double> d(static_cast<std::size_t>(c.B() * c.rows_Q() * c.N1 * c.Dv), 0.0);
    std::int64_t t0 = 0;
    for (std::int64_t b = 0; b < c.B(); ++b) {
        const std::int64_t L = c.kv_lens[std::size_t(b)], Qb = c.q_lens[std::size_t(b)];
        for (std::int64_t s = 0; s < Qb; ++s)
            for (std::int64_t i = 0; i < c.N1 * c.Dv; ++i)
                d[std::size_t((b * c.rows_Q() + s) * c.N1 * c.Dv + i)] =
                    training_dense[std::size_t((t0 + L - Qb + s) * c.N1 * c.Dv + i)];
        t0 += L;
    }
    return d;
}

}  // namespace

TEST(SelectAttentionInferReference, EqualsTheTrainingReferenceAtTheLastPositions) {
    SelInferTensors t(drafts(DType::f32));
    Training tr = training_copy(t);
    const auto infer_ref = sai::reference::forward(sai::validate(t.args(), t.params));
    const auto train_ref = opennsa::detail::select_attention::reference::forward(
        opennsa::detail::select_attention::validate_forward(tr.args(), tr.params));
    EXPECT_TRUE(close(infer_ref, decoding_rows(t, train_ref.out), 1e-12, "float64 references"));
}

TEST(SelectAttentionInferReference, LibraryAgreesWithTrainingOperator) {
    for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
        SelInferTensors t(drafts(dtype));
        SCOPED_TRACE(t.c.describe());
        Training tr = training_copy(t);
        opennsa::forward(tr.args(), tr.params);
        EXPECT_TRUE(run_and_check(t));
        EXPECT_TRUE(close(t.dense_out(), decoding_rows(t, tr.out.dense()), tol_out(dtype), "decoding vs training"));
    }
}

TEST(SelectAttentionInferReference, VisiblePositionsFollowTheDraftRule) {
    SelInferCase c = drafts(DType::f32);
    c.kv_lens = {40};
    c.q_lens = {3};
    c.sel = 16;
    c.k = 3;
    SelInferTensors t(c);
    t.set_slot(0, 0, 0, 0, 2);   // positions 32..39; token 0 sees p < 38
    t.set_slot(0, 0, 0, 1, -1);
    t.set_slot(0, 0, 0, 2, 2);   // duplicate: counted twice
    const sai::Problem p = sai::validate(t.args(), t.params);
    const std::vector<std::int64_t> want = {32, 33, 34, 35, 36, 37, 32, 33, 34, 35, 36, 37};
    EXPECT_EQ(sai::reference::visible_positions(p, 0, 0, 0), want);
    EXPECT_EQ(p.visible_end(0, 2), 40);
    EXPECT_EQ(p.visible_end(0, 1), 39);
}
