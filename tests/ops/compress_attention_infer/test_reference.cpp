// The oracle and the operator against the training compressed attention: a decoding step is the
// training operator's last rows under its causal rule (sparseMode 2: compressed token j visible to
// raw position i iff j*d + l - 1 <= i), which is the multi-token rule of the infer operator (and,
// for one token at the end of the sequence, all C_b tokens).
//
// The selection blocks differ: training ranks ceil(C / m) blocks and forces only what topkMask
// says; the infer operator ranks NS_b = ceil(((C - 1)*d + l) / l') blocks, which is ceil(C / m)
// or one more, with {0, NS_b - 2, NS_b - 1} forced. So training gets a topkMask forcing those of
// them it has; where NS_b is one more, the infer ranking is the training ranking with NS_b - 1
// inserted third (after 0 and NS_b - 2), the last training slot falling off.
#include <gtest/gtest.h>

#include "ops/compress_attention/reference.hpp"
#include "ops/compress_attention_infer/cases.hpp"

using namespace nsa_test;

namespace {

struct Training {
    HostTensor q, k, v, out, topk, smax, ssum;
    std::vector<unsigned char> forced;
    opennsa::CompressAttentionParams params;
    std::int64_t ns = 0;
};

// The training problem of one sequence of L raw tokens whose last Q queries are the infer case's.
Training training_of(const CattnInferTensors& t) {
    const CattnInferCase& c = t.c;
    const std::int64_t L = c.raw_lens[0], Q = c.q_lens[0], C = c.c_lens[0];
    Training tr;
    tr.q = HostTensor::make(c.dtype, L, c.N1, c.Dk, false);
    std::mt19937_64 rng(c.seed + 1);
    tr.q.fill_normal(rng);
    for (std::int64_t s = 0; s < Q; ++s)
        for (std::int64_t h = 0; h < c.N1; ++h)
            for (std::int64_t e = 0; e < c.Dk; ++e) tr.q.set(L - Q + s, h, e, t.q.get(s, h, e));
    tr.k = HostTensor::make(c.dtype, C, c.N2, c.Dk, false);
    tr.v = HostTensor::make(c.dtype, C, c.N2, c.Dv, false);
    for (std::int64_t j = 0; j < C; ++j) {
        const std::int64_t row = t.cache_row(0, j);
        for (std::int64_t n2 = 0; n2 < c.N2; ++n2) {
            for (std::int64_t e = 0; e < c.Dk; ++e) tr.k.set(j, n2, e, t.key.get(row / c.P, row % c.P, n2 * c.Dk + e));
            for (std::int64_t e = 0; e < c.Dv; ++e) tr.v.set(j, n2, e, t.value.get(row / c.P, row % c.P, n2 * c.Dv + e));
        }
    }
    tr.out = HostTensor::make(c.dtype, L, c.N1, c.Dv, false);
    tr.topk = HostTensor::make(DType::i32, L, c.N2, c.k, false);
    tr.smax = HostTensor::make(DType::f32, L, c.N1, 8, false);
    tr.ssum = HostTensor::make(DType::f32, L, c.N1, 8, false);
    const std::int64_t m = c.sel / c.d, ns_infer = t.problem().block_count(0);
    tr.ns = (C + m - 1) / m;
    tr.forced.assign(static_cast<std::size_t>(L * std::max<std::int64_t>(tr.ns, 1)), 0);
    for (std::int64_t i = 0; i < L; ++i)
        for (std::int64_t J = 0; J < tr.ns; ++J)
            tr.forced[static_cast<std::size_t>(i * tr.ns + J)] = cai::Problem::forced(J, ns_infer);
    tr.params.scale = t.params.scale;
    tr.params.head_num = c.N1;
    tr.params.compress_block_size = c.l;
    tr.params.compress_stride = c.d;
    tr.params.select_block_size = c.sel;
    tr.params.select_block_count = c.k;
    tr.params.sparse_mode = opennsa::kCompressSparseModeCausal;
    return tr;
}

opennsa::CompressAttentionArgs training_args(Training& tr) {
    const std::int64_t L = tr.q.view.shape[0];
    return {.query = tr.q.view, .key = tr.k.view, .value = tr.v.view, .atten_mask = {},
            .topk_mask = TensorView::contiguous(tr.forced.data(), DType::u8, {L, std::max<std::int64_t>(tr.ns, 1)}),
            .out = tr.out.view, .topk = tr.topk.view, .softmax_max = tr.smax.view, .softmax_sum = tr.ssum.view};
}

// The infer ranking expected from the training one (see the file comment).
std::vector<std::int32_t> expected_topk(const std::vector<std::int32_t>& training, std::int64_t ns_train,
                                        std::int64_t ns_infer) {
    if (ns_infer == ns_train) return training;
    std::vector<std::int32_t> want;
    for (std::int32_t x : training) {
        if (static_cast<std::int64_t>(want.size()) == std::min<std::int64_t>(2, ns_infer - 1)) want.push_back(static_cast<std::int32_t>(ns_infer - 1));
        if (x >= 0) want.push_back(x);
    }
    if (static_cast<std::int64_t>(want.size()) < std::min<std::int64_t>(ns_infer, static_cast<std::int64_t>(training.size())) &&
        std::find(want.begin(), want.end(), static_cast<std::int32_t>(ns_infer - 1)) == want.end())
        want.push_back(static_cast<std::int32_t>(ns_infer - 1));
    want.resize(training.size(), -1);
    return want;
}

CattnInferCase sequence_case(std::mt19937_64& rng, DType dtype, bool bsnd) {
    auto pick = [&](std::initializer_list<std::int64_t> xs) {
        return *(xs.begin() + std::uniform_int_distribution<std::size_t>(0, xs.size() - 1)(rng));
    };
    CattnInferCase c;
    c.dtype = dtype;
    c.bsnd = bsnd;
    c.seed = rng();
    c.N2 = pick({1, 2});
    c.N1 = c.N2 * pick({1, 2, 4});
    c.Dk = pick({8, 16, 24});
    c.Dv = c.Dk - pick({0, 4});
    c.d = pick({1, 2, 4});
    c.l = c.d * pick({1, 2, 3}) + pick({0, 1}) % c.d;
    c.sel = c.d * std::max<std::int64_t>(pick({1, 2, 4}), (c.l + c.d - 1) / c.d);
    c.k = pick({1, 3, 5, 8});
    c.P = pick({2, 5, 16});
    const std::int64_t Q = pick({1, 1, 2, 4});
    const std::int64_t L = std::uniform_int_distribution<std::int64_t>(Q + c.l, 260)(rng);
    c.q_lens = {Q};
    c.raw_lens = {L};
    c.c_lens = {compressed_tokens(L, c.l, c.d)};
    c.pass_q_lens = true;
    c.mask = Q > 1 || pick({0, 1});
    return c;
}

}  // namespace

TEST(InferAgainstTraining, TheLastRowsOfTheCausalTrainingOperator) {
    std::mt19937_64 rng(case_seed(40));
    for (int i = 0; i < 24; ++i) {
        const CattnInferCase c = sequence_case(rng, i % 3 == 0 ? DType::bf16 : DType::f32, i % 2 == 1);
        SCOPED_TRACE(c.describe());
        CattnInferTensors t(c);
        Training tr = training_of(t);
        opennsa::compress_attention_infer(t.args(), t.params);
        const opennsa::CompressAttentionArgs ta = training_args(tr);
        opennsa::compress_attention(ta, tr.params);
        const cai::Problem p = t.problem();
        const auto ref = cai::reference::forward(p);
        const auto train_ref = opennsa::detail::compress_attention::reference::forward(
            opennsa::detail::compress_attention::validate_forward(ta, tr.params));
        const std::int64_t L = c.raw_lens[0], Q = c.q_lens[0], ns = p.block_count(0);
        std::vector<double> got, want;
        for (std::int64_t s = 0; s < Q; ++s) {
            const std::int64_t row = cai::reference::flat_row(p, 0, s), i = L - Q + s;
            for (std::int64_t h = 0; h < c.N1; ++h)
                for (std::int64_t e = 0; e < c.Dv; ++e) {
                    got.push_back(t.out.get(row, h, e));
                    want.push_back(tr.out.get(i, h, e));
                    // The two oracles agree to float64 rounding.
                    EXPECT_NEAR(ref.out[static_cast<std::size_t>((row * c.N1 + h) * c.Dv + e)],
                                train_ref.out[static_cast<std::size_t>((i * c.N1 + h) * c.Dv + e)], 1e-12);
                }
            for (std::int64_t n2 = 0; n2 < c.N2; ++n2) {
                std::vector<std::int32_t> infer_top, train_top;
                for (std::int64_t x = 0; x < c.k; ++x) {
                    infer_top.push_back(static_cast<std::int32_t>(t.topk.get(row, n2, x)));
                    train_top.push_back(static_cast<std::int32_t>(tr.topk.get(i, n2, x)));
                }
                const std::vector<std::int32_t> expect = expected_topk(train_top, tr.ns, ns);
                for (std::int64_t x = 0; x < c.k; ++x) {
                    const std::int32_t a = infer_top[static_cast<std::size_t>(x)], b = expect[static_cast<std::size_t>(x)];
                    if (a == b) continue;
                    // Only a near tie of the float64 scores may order two blocks differently.
                    const std::size_t base = static_cast<std::size_t>((row * c.N2 + n2) * ref.max_ns);
                    ASSERT_TRUE(a >= 0 && b >= 0) << "slot " << x << ": " << a << " vs " << b;
                    const double sa = ref.score[base + static_cast<std::size_t>(a)], sb = ref.score[base + static_cast<std::size_t>(b)];
                    EXPECT_LE(std::abs(sa - sb), 1e-5 * std::max(1.0, std::abs(sa)))
                        << "token " << s << " kv head " << n2 << " slot " << x << ": infer " << a << ", training " << b;
                }
            }
        }
        EXPECT_TRUE(close(got, want, 2 * tol_out(c.dtype), "infer output vs training output"));
        EXPECT_TRUE(outputs_ok(t, ref));
    }
}

TEST(InferReference, HandComputedStep) {
    // One token, one head, Dk = Dv = 1, l = d = 1, l' = 2 (m = 2, n = 1, w = [1, 1]): C = 5
    // compressed tokens with keys 0 (so P = 1/5 each) and values 0..4.
    CattnInferCase c;
    c.N1 = c.N2 = 1;
    c.Dk = c.Dv = 1;
    c.l = c.d = 1;
    c.sel = 2;
    c.k = 4;
    c.P = 2;
    c.c_lens = {5};
    CattnInferTensors t(c);
    for (std::int64_t j = 0; j < 5; ++j) {
        const std::int64_t row = t.cache_row(0, j);
        t.key.set(row / c.P, row % c.P, 0, 0.0);
        t.value.set(row / c.P, row % c.P, 0, static_cast<double>(j));
    }
    const auto ref = cai::reference::forward(t.problem());
    EXPECT_DOUBLE_EQ(ref.out[0], 2.0);
    // NS = ceil((4 + 1) / 2) = 3, all forced: block J scores P[2J + 2] + P[2J + 1].
    EXPECT_DOUBLE_EQ(ref.score[0], 0.4);
    EXPECT_DOUBLE_EQ(ref.score[1], 0.4);
    EXPECT_DOUBLE_EQ(ref.score[2], 0.0);
    EXPECT_EQ(ref.topk, (std::vector<std::int32_t>{0, 1, 2, -1}));
    opennsa::compress_attention_infer(t.args(), t.params);
    EXPECT_NEAR(t.out.get(0, 0, 0), 2.0, 1e-6);
    for (std::int64_t x = 0; x < 4; ++x) EXPECT_EQ(t.topk.get(0, 0, x), ref.topk[static_cast<std::size_t>(x)]);
}
