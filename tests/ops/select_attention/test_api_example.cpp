// README's native API example, as code that runs: contiguous bf16 buffers, varlen batches, causal,
// forward then backward, checked against the reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "ops/select_attention/cases.hpp"

TEST(ApiExample, ReadmeForwardBackward) {
    using opennsa::DType;
    using opennsa::TensorView;
    const std::int64_t T = 96, N1 = 4, N2 = 1, Dk = 24, Dv = 16, C = 4, bs = 8;
    std::mt19937_64 rng(nsa_test::case_seed(42));
    std::normal_distribution<float> nd;
    auto bf16 = [&](std::int64_t n) {
        std::vector<std::uint16_t> x(static_cast<std::size_t>(n));
        for (auto& e : x) e = opennsa::detail::f32_to_bf16(nd(rng));
        return x;
    };
    auto q = bf16(T * N1 * Dk), k = bf16(T * N2 * Dk), v = bf16(T * N2 * Dv), dO = bf16(T * N1 * Dv);
    std::vector<std::uint16_t> out(q.size() / Dk * Dv), dq(q.size()), dk(k.size()), dv(v.size());
    std::vector<float> smax(static_cast<std::size_t>(T * N1 * 8)), ssum(smax.size());
    std::vector<std::int32_t> topk(static_cast<std::size_t>(T * N2 * C));
    for (std::int64_t t = 0; t < T; ++t) {  // block 0, the local block, then earlier ones or -1
        const std::int64_t i = t < 40 ? t : t - 40;
        for (std::int64_t j = 0; j < C; ++j)
            topk[static_cast<std::size_t>(t * C + j)] = static_cast<std::int32_t>(j == 0 ? 0 : (i / bs - j + 1 >= 0 ? i / bs - j + 1 : -1));
    }

    opennsa::Params p;
    p.scale = 1.0 / std::sqrt(static_cast<double>(Dk));
    p.head_num = N1;
    p.block_size = bs;
    p.block_count = C;
    p.sparse_mode = opennsa::kSparseModeCausal;
    p.cu_seqlens_q = std::vector<std::int64_t>{40, T};
    p.cu_seqlens_kv = std::vector<std::int64_t>{40, T};

    opennsa::forward({.query = TensorView::contiguous(q.data(), DType::bf16, {T, N1, Dk}),
                      .key = TensorView::contiguous(k.data(), DType::bf16, {T, N2, Dk}),
                      .value = TensorView::contiguous(v.data(), DType::bf16, {T, N2, Dv}),
                      .topk = TensorView::contiguous(topk.data(), DType::i32, {T, N2, C}),
                      .atten_mask = {},
                      .out = TensorView::contiguous(out.data(), DType::bf16, {T, N1, Dv}),
                      .softmax_max = TensorView::contiguous(smax.data(), DType::f32, {T, N1, 8}),
                      .softmax_sum = TensorView::contiguous(ssum.data(), DType::f32, {T, N1, 8})},
                     p);
    const opennsa::BackwardArgs ba{.query = TensorView::contiguous(q.data(), DType::bf16, {T, N1, Dk}),
                                   .key = TensorView::contiguous(k.data(), DType::bf16, {T, N2, Dk}),
                                   .value = TensorView::contiguous(v.data(), DType::bf16, {T, N2, Dv}),
                                   .out = TensorView::contiguous(out.data(), DType::bf16, {T, N1, Dv}),
                                   .out_grad = TensorView::contiguous(dO.data(), DType::bf16, {T, N1, Dv}),
                                   .softmax_max = TensorView::contiguous(smax.data(), DType::f32, {T, N1, 8}),
                                   .softmax_sum = TensorView::contiguous(ssum.data(), DType::f32, {T, N1, 8}),
                                   .topk = TensorView::contiguous(topk.data(), DType::i32, {T, N2, C}),
                                   .atten_mask = {},
                                   .query_grad = TensorView::contiguous(dq.data(), DType::bf16, {T, N1, Dk}),
                                   .key_grad = TensorView::contiguous(dk.data(), DType::bf16, {T, N2, Dk}),
                                   .value_grad = TensorView::contiguous(dv.data(), DType::bf16, {T, N2, Dv})};
    opennsa::backward(ba, p);

    const auto prob = sel::validate_backward(ba, p);
    const auto ref = sel::reference::backward(prob);
    auto as_double = [](const std::vector<std::uint16_t>& x) {
        std::vector<double> d;
        for (auto e : x) d.push_back(opennsa::detail::bf16_to_f32(e));
        return d;
    };
    EXPECT_TRUE(nsa_test::close(as_double(dq), ref.dq, nsa_test::tol_grad(DType::bf16), "dq"));
    EXPECT_TRUE(nsa_test::close(as_double(dk), ref.dk, nsa_test::tol_grad(DType::bf16), "dk"));
    EXPECT_TRUE(nsa_test::close(as_double(dv), ref.dv, nsa_test::tol_grad(DType::bf16), "dv"));
    // And the forward's own output against the reference forward.
    const auto fwd = sel::reference::forward(prob);
    EXPECT_TRUE(nsa_test::close(as_double(out), fwd.out, nsa_test::tol_out(DType::bf16), "out"));
}
