// The oracle itself: the fp64 reference forward equals a brute-force dense attention whose mask
// is built from the selection, and the reference backward is the true gradient of the forward
// (central finite differences in fp64), duplicates, causal masking and padding included.
#include <gtest/gtest.h>

#include "ops/select_attention/cases.hpp"

using namespace nsa_test;

namespace {

// Dense attention over all keys of the batch, each key weighted by how many selected slots
// cover it (0 = masked). Independent of the reference's slot walk.
std::vector<double> dense_forward(const Tensors& t) {
    const Case& c = t.c;
    const std::int64_t T1 = c.T1(), G = c.N1 / c.N2;
    std::vector<double> out(static_cast<std::size_t>(T1 * c.N1 * c.Dv), 0.0);
    std::int64_t q0 = 0, kv0 = 0;
    for (std::size_t b = 0; b < c.q_lens.size(); ++b) {
        const std::int64_t S2 = c.kv_lens[b];
        for (std::int64_t i = 0; i < c.q_lens[b]; ++i)
            for (std::int64_t h = 0; h < c.N1; ++h) {
                const std::int64_t n2 = h / G, tq = q0 + i;
                std::vector<double> weight(static_cast<std::size_t>(S2), 0.0), s(static_cast<std::size_t>(S2), 0.0);
                for (std::int64_t j = 0; j < c.C; ++j) {
                    const auto x = static_cast<std::int64_t>(t.topk.get(tq, n2, j));
                    if (x < 0) continue;
                    for (std::int64_t p = x * c.bs; p < std::min(S2, (x + 1) * c.bs); ++p) weight[static_cast<std::size_t>(p)] += 1;
                }
                double mx = -INFINITY;
                for (std::int64_t p = 0; p < S2; ++p) {
                    if (c.causal && p > i) weight[static_cast<std::size_t>(p)] = 0;
                    if (weight[static_cast<std::size_t>(p)] == 0) continue;
                    double d = 0;
                    for (std::int64_t e = 0; e < c.Dk; ++e) d += t.q.get(tq, h, e) * t.k.get(kv0 + p, n2, e);
                    s[static_cast<std::size_t>(p)] = t.params.scale * d;
                    mx = std::max(mx, s[static_cast<std::size_t>(p)]);
                }
                if (mx == -INFINITY) continue;  // nothing visible: out = 0
                double sum = 0;
                for (std::int64_t p = 0; p < S2; ++p) sum += weight[static_cast<std::size_t>(p)] * std::exp(s[static_cast<std::size_t>(p)] - mx);
                for (std::int64_t p = 0; p < S2; ++p) {
                    const double w = weight[static_cast<std::size_t>(p)] * std::exp(s[static_cast<std::size_t>(p)] - mx) / sum;
                    if (w == 0) continue;
                    for (std::int64_t e = 0; e < c.Dv; ++e)
                        out[static_cast<std::size_t>((tq * c.N1 + h) * c.Dv + e)] += w * t.v.get(kv0 + p, n2, e);
                }
            }
        q0 += c.q_lens[b];
        kv0 += c.kv_lens[b];
    }
    return out;
}

double loss(Tensors& t, const std::vector<double>& w) {
    const auto ref = sel::reference::forward(sel::validate_forward(t.forward_args(), t.params));
    double l = 0;
    for (std::size_t i = 0; i < w.size(); ++i) l += w[i] * ref.out[i];
    return l;
}

// Central differences of L = sum(W * out) for every element of x, against `analytic`.
void check_gradient(Tensors& t, HostTensor& x, const std::vector<double>& analytic, const std::vector<double>& w,
                    const char* what) {
    const double eps = 1e-6;
    double max_grad = 0;
    for (double g : analytic) max_grad = std::max(max_grad, std::abs(g));
    ASSERT_GT(max_grad, 0.0) << what << " gradient is identically zero: the case tests nothing";
    std::size_t n = 0;
    for (std::int64_t i = 0; i < x.view.shape[0]; ++i)
        for (std::int64_t j = 0; j < x.view.shape[1]; ++j)
            for (std::int64_t k = 0; k < x.view.shape[2]; ++k, ++n) {
                const double x0 = x.get(i, j, k);
                x.set(i, j, k, x0 + eps);
                const double lp = loss(t, w);
                x.set(i, j, k, x0 - eps);
                const double lm = loss(t, w);
                x.set(i, j, k, x0);
                const double fd = (lp - lm) / (2 * eps);
                // The backward reads max / sum from fp32 tensors: about 1e-7 relative noise.
                ASSERT_NEAR(analytic[n], fd, 2e-6 * max_grad + 1e-8)
                    << what << "[" << i << ", " << j << ", " << k << "] " << t.c.describe();
            }
}

Case small_case(std::uint64_t salt, bool causal) {
    Case c;
    c.dtype = opennsa::DType::f64;
    c.N1 = 4;
    c.N2 = 2;
    c.Dk = 5;
    c.Dv = 3;
    c.bs = 3;
    c.C = 4;
    c.q_lens = {7, 0, 6};
    c.kv_lens = {8, 2, 7};
    c.pad_q = 2;
    c.pad_kv = 1;
    c.varlen = true;
    c.causal = causal;
    c.duplicate = 0.4;
    c.empty_slot = 0.2;
    c.beyond_causal = 0.3;
    c.seed = case_seed(salt);
    return c;
}

}  // namespace

TEST(Reference, ForwardEqualsDenseMaskedAttention) {
    // The oracle and the library (fp64 and fp32 inputs) against the dense formulation.
    std::mt19937_64 rng(case_seed(101));
    for (int i = 0; i < 16; ++i) {
        const auto dtype = i % 2 ? opennsa::DType::f64 : opennsa::DType::f32;
        Case c = random_case(rng, dtype);
        Tensors t(c);
        const auto dense = dense_forward(t);
        const auto ref = sel::reference::forward(sel::validate_forward(t.forward_args(), t.params));
        EXPECT_TRUE(close(ref.out, dense, 1e-12, "reference out vs dense")) << c.describe();
        opennsa::forward(t.forward_args(), t.params);
        EXPECT_TRUE(close(t.out.dense(), dense, tol_out(dtype), "library out vs dense")) << c.describe();
    }
}

TEST(Reference, BackwardIsTheGradientOfTheForward) {
    for (bool causal : {true, false}) {
        Tensors t(small_case(causal ? 201 : 202, causal));
        t.set_forward_from_reference();  // out, max, sum of the forward; dO plays W
        const auto w = t.dO.dense();
        const auto grads =
            sel::reference::backward(sel::validate_backward(t.backward_args(), t.params));
        check_gradient(t, t.q, grads.dq, w, "dq");
        check_gradient(t, t.k, grads.dk, w, "dk");
        check_gradient(t, t.v, grads.dv, w, "dv");
    }
}

TEST(Reference, LibraryFp64BackwardIsTheGradientOfTheForward) {
    // The generic path in fp64: same finite-difference check on what the library computes.
    for (bool causal : {true, false}) {
        Tensors t(small_case(causal ? 301 : 302, causal));
        opennsa::forward(t.forward_args(), t.params);
        const auto w = t.dO.dense();
        opennsa::backward(t.backward_args(), t.params);
        check_gradient(t, t.q, t.dq.dense(), w, "dq");
        check_gradient(t, t.k, t.dk.dense(), w, "dk");
        check_gradient(t, t.v, t.dv.dense(), w, "dv");
    }
}
