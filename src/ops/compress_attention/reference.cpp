#include "ops/compress_attention/reference.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/convert.hpp"
#include "kernels/portable.hpp"

namespace opennsa::detail::compress_attention::reference {
namespace {

double at(const TensorView& t, std::int64_t i, std::int64_t j, std::int64_t k) {
    const auto* base = static_cast<const char*>(t.data);
    const std::int64_t offset = i * t.strides[0] + j * t.strides[1] + k * t.strides[2];
    return load_as_double(base + offset * static_cast<std::int64_t>(dtype_size(t.dtype)), t.dtype);
}

// A 3-D input read once into dense row-major doubles, so the formulas below stay plain loops.
struct Dense {
    std::int64_t n1 = 0, n2 = 0;
    std::vector<double> x;
    explicit Dense(const TensorView& t) : n1(t.shape[1]), n2(t.shape[2]) {
        x.reserve(static_cast<std::size_t>(t.shape[0] * n1 * n2));
        for (std::int64_t i = 0; i < t.shape[0]; ++i)
            for (std::int64_t j = 0; j < n1; ++j)
                for (std::int64_t k = 0; k < n2; ++k) x.push_back(at(t, i, j, k));
    }
    const double* row(std::int64_t i, std::int64_t j) const { return x.data() + (i * n1 + j) * n2; }
};

double dot(const double* a, const double* b, std::int64_t n) {
    double s = 0.0;
    for (std::int64_t d = 0; d < n; ++d) s += a[d] * b[d];
    return s;
}

std::size_t idx(std::int64_t i) { return static_cast<std::size_t>(i); }

}  // namespace

bool visible(const Problem& p, std::int64_t b, std::int64_t i, std::int64_t j) {
    (void)b;
    if (p.causal) {  // j*d + l - 1 <= i, without int64 overflow for any d
        std::int64_t last = 0;
        return !__builtin_mul_overflow(j, p.d, &last) && !__builtin_add_overflow(last, p.l - 1, &last) && last <= i;
    }
    if (p.use_mask) return *element<const std::uint8_t>(p.atten_mask, i, j) == 0;
    return true;
}

std::vector<double> block_scores(const std::vector<double>& psum, std::int64_t ns, std::int64_t m_blocks,
                                 std::int64_t n_taps) {
    // score[J] = sum_t w(t) psum[(J + 1) m - t], positions outside [0, C) left out: a walk over
    // the positions (t = (J + 1) m - j, in long double, exact for any int64 m, so any l' works),
    // w(t) = min(t + 1, n, m + n - 1 - t) for 0 <= t <= m + n - 2.
    const std::int64_t C = static_cast<std::int64_t>(psum.size());
    std::vector<double> score(idx(ns), 0.0);
    const long double m = static_cast<long double>(m_blocks), n = static_cast<long double>(n_taps);
    for (std::int64_t J = 0; J < ns; ++J)
        for (std::int64_t j = 0; j < C; ++j) {
            const long double tap = static_cast<long double>(J + 1) * m - static_cast<long double>(j);
            if (tap < 0 || tap > m + n - 2) continue;
            const long double w = std::min({tap + 1, n, m + n - 1 - tap});
            score[idx(J)] += static_cast<double>(w) * psum[idx(j)];
        }
    return score;
}

std::vector<std::int32_t> rank(const std::vector<double>& score, const std::vector<std::uint8_t>& forced,
                               std::int64_t k) {
    std::vector<std::int32_t> order(score.size());
    std::iota(order.begin(), order.end(), 0);
    // Forced first, then NaN, then numbers by descending score; a stable sort keeps ascending
    // index within each class and among equal scores.
    auto kind = [&](std::int32_t J) { return forced[idx(J)] ? 0 : (std::isnan(score[idx(J)]) ? 1 : 2); };
    std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
        if (kind(a) != kind(b)) return kind(a) < kind(b);
        return kind(a) == 2 && score[idx(a)] > score[idx(b)];
    });
    order.resize(static_cast<std::size_t>(k), -1);
    return order;
}

ForwardResult forward(const Problem& p) {
    ForwardResult r;
    r.out.assign(idx(p.T1 * p.N1 * p.Dv), 0.0);
    r.max.assign(idx(p.T1 * p.N1), 0.0);
    r.sum.assign(idx(p.T1 * p.N1), 0.0);
    r.score.assign(idx(p.T1 * p.N2 * p.max_ns), 0.0);
    r.forced.assign(idx(p.T1 * p.N2 * p.max_ns), 0);
    r.topk.assign(idx(p.T1 * p.N2 * p.sel_count), -1);
    const Dense q(p.q), k(p.k), v(p.v);
    const double scale = static_cast<float>(p.scale);  // applied in fp32, as CANN converts it
    for (std::int64_t b = 0; b < p.batches.count(); ++b) {
        const std::int64_t C = p.batches.key_count(b), kv0 = p.batches.kv[b];
        const std::int64_t ns = p.block_count(b);
        for (std::int64_t i = 0; i < p.batches.query_count(b); ++i) {
            const std::int64_t t = p.batches.q[b] + i;
            for (std::int64_t n2 = 0; n2 < p.N2; ++n2) {
                // The fp64 probabilities summed over the group's heads, per compressed position.
                std::vector<double> psum(idx(C), 0.0);
                for (std::int64_t h = n2 * p.G; h < (n2 + 1) * p.G; ++h) {
                    std::vector<std::int64_t> keys;
                    for (std::int64_t j = 0; j < C; ++j)
                        if (visible(p, b, i, j)) keys.push_back(j);
                    if (keys.empty()) continue;  // out = max = sum = 0, P = 0
                    std::vector<double> s(keys.size());
                    double mx = -INFINITY;
                    for (std::size_t x = 0; x < keys.size(); ++x) {
                        s[x] = scale * dot(q.row(t, h), k.row(kv0 + keys[x], n2), p.Dk);
                        mx = max_nan(mx, s[x]);  // a NaN score makes the row NaN
                    }
                    double sum = 0.0;
                    for (double sx : s) sum += std::exp(sx - mx);
                    double* o = &r.out[idx((t * p.N1 + h) * p.Dv)];
                    for (std::size_t x = 0; x < keys.size(); ++x) {
                        const double P = std::exp(s[x] - mx) / sum;
                        psum[idx(keys[x])] += P;
                        for (std::int64_t e = 0; e < p.Dv; ++e) o[e] += P * v.row(kv0 + keys[x], n2)[e];
                    }
                    r.max[idx(t * p.N1 + h)] = mx;
                    r.sum[idx(t * p.N1 + h)] = sum;
                }
                const std::vector<double> score = block_scores(psum, ns, p.m, p.n);
                std::vector<std::uint8_t> forced(idx(ns), 0);
                for (std::int64_t J = 0; J < ns; ++J) {
                    forced[idx(J)] = p.use_topk_mask && *element<const std::uint8_t>(p.topk_mask, i, J) != 0;
                    r.score[idx((t * p.N2 + n2) * p.max_ns + J)] = score[idx(J)];
                    r.forced[idx((t * p.N2 + n2) * p.max_ns + J)] = forced[idx(J)];
                }
                const std::vector<std::int32_t> top = rank(score, forced, p.sel_count);
                std::copy(top.begin(), top.end(), r.topk.begin() + (t * p.N2 + n2) * p.sel_count);
            }
        }
    }
    return r;
}

BackwardResult backward(const Problem& p) {
    BackwardResult r;
    r.dq.assign(idx(p.T1 * p.N1 * p.Dk), 0.0);
    r.dk.assign(idx(p.T2 * p.N2 * p.Dk), 0.0);
    r.dv.assign(idx(p.T2 * p.N2 * p.Dv), 0.0);
    r.dq_abs.assign(r.dq.size(), 0.0);
    r.dk_abs.assign(r.dk.size(), 0.0);
    r.dv_abs.assign(r.dv.size(), 0.0);
    const Dense q(p.q), k(p.k), v(p.v), o(p.out), dO(p.out_grad);
    const double scale = static_cast<float>(p.scale);
    for (std::int64_t b = 0; b < p.batches.count(); ++b) {
        const std::int64_t C = p.batches.key_count(b), kv0 = p.batches.kv[b];
        for (std::int64_t i = 0; i < p.batches.query_count(b); ++i) {
            const std::int64_t t = p.batches.q[b] + i;
            for (std::int64_t h = 0; h < p.N1; ++h) {
                const std::int64_t n2 = h / p.G;
                const auto [st, sh] = p.stat_index(b, h, i);
                const double mx = at(p.softmax_max, st, sh, 0);
                const double sum = at(p.softmax_sum, st, sh, 0);
                if (sum == 0.0) continue;  // a row that saw nothing contributes nothing
                const double Dt = dot(dO.row(t, h), o.row(t, h), p.Dv);
                double* dq = &r.dq[idx((t * p.N1 + h) * p.Dk)];
                for (std::int64_t j = 0; j < C; ++j) {
                    if (!visible(p, b, i, j)) continue;
                    const std::int64_t key = kv0 + j;
                    const double s = scale * dot(q.row(t, h), k.row(key, n2), p.Dk);
                    const double P = std::exp(s - mx) / sum;
                    const double dP = dot(dO.row(t, h), v.row(key, n2), p.Dv);
                    const double dS = P * (dP - Dt);
                    const double dS_abs = std::abs(P) * (std::abs(dP) + std::abs(Dt));
                    const std::size_t at_k = idx((key * p.N2 + n2) * p.Dk), at_v = idx((key * p.N2 + n2) * p.Dv);
                    const std::size_t at_q = idx((t * p.N1 + h) * p.Dk);
                    for (std::int64_t e = 0; e < p.Dk; ++e) {
                        dq[e] += scale * dS * k.row(key, n2)[e];
                        r.dk[at_k + idx(e)] += scale * dS * q.row(t, h)[e];
                        r.dq_abs[at_q + idx(e)] += std::abs(scale) * dS_abs * std::abs(k.row(key, n2)[e]);
                        r.dk_abs[at_k + idx(e)] += std::abs(scale) * dS_abs * std::abs(q.row(t, h)[e]);
                    }
                    for (std::int64_t e = 0; e < p.Dv; ++e) {
                        r.dv[at_v + idx(e)] += P * dO.row(t, h)[e];
                        r.dv_abs[at_v + idx(e)] += std::abs(P) * std::abs(dO.row(t, h)[e]);
                    }
                }
            }
        }
    }
    return r;
}

}  // namespace opennsa::detail::compress_attention::reference
