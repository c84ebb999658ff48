#include "nsa/reference.hpp"

#include <cmath>

#include "nsa/dtype.hpp"

namespace opennsa::reference {
namespace {

using detail::Problem;

double at(const TensorView& t, std::int64_t i, std::int64_t j, std::int64_t k) {
    const auto* base = static_cast<const char*>(t.data);
    const std::int64_t offset = i * t.strides[0] + j * t.strides[1] + k * t.strides[2];
    return detail::load_as_double(base + offset * static_cast<std::int64_t>(dtype_size(t.dtype)), t.dtype);
}

double dot(const TensorView& a, std::int64_t ai, std::int64_t aj, const TensorView& b, std::int64_t bi,
           std::int64_t bj, std::int64_t n) {
    double s = 0.0;
    for (std::int64_t d = 0; d < n; ++d) s += at(a, ai, aj, d) * at(b, bi, bj, d);
    return s;
}

}  // namespace

std::vector<std::int64_t> visible_keys(const Problem& p, std::int64_t batch, std::int64_t t, std::int64_t n2) {
    const std::int64_t i = t - p.batches.q[batch];  // position of the query in its batch
    const std::int64_t S2 = p.batches.key_count(batch);
    const std::int64_t kv0 = p.batches.kv[batch];
    std::vector<std::int64_t> keys;
    for (std::int64_t j = 0; j < p.C; ++j) {
        const auto x = static_cast<std::int64_t>(at(p.topk, t, n2, j));
        if (x == -1) continue;
        for (std::int64_t r = 0; r < p.bs; ++r) {
            const std::int64_t pos = x * p.bs + r;
            if (pos >= S2) break;
            if (p.causal && pos > i) break;
            keys.push_back(kv0 + pos);
        }
    }
    return keys;
}

ForwardResult forward(const Problem& p) {
    ForwardResult r;
    r.out.assign(static_cast<std::size_t>(p.T1 * p.N1 * p.Dv), 0.0);
    r.max.assign(static_cast<std::size_t>(p.T1 * p.N1), 0.0);
    r.sum.assign(static_cast<std::size_t>(p.T1 * p.N1), 0.0);
    for (std::int64_t b = 0; b < p.batches.count(); ++b)
        for (std::int64_t t = p.batches.q[b]; t < p.batches.q[b + 1]; ++t)
            for (std::int64_t h = 0; h < p.N1; ++h) {
                const std::int64_t n2 = h / p.G;
                const auto keys = visible_keys(p, b, t, n2);
                if (keys.empty()) continue;  // out = max = sum = 0
                std::vector<double> s(keys.size());
                double mx = -INFINITY;
                for (std::size_t n = 0; n < keys.size(); ++n) {
                    s[n] = p.scale * dot(p.q, t, h, p.k, keys[n], n2, p.Dk);
                    mx = std::max(mx, s[n]);
                }
                double sum = 0.0;
                for (double sn : s) sum += std::exp(sn - mx);
                double* o = &r.out[static_cast<std::size_t>((t * p.N1 + h) * p.Dv)];
                for (std::size_t n = 0; n < keys.size(); ++n) {
                    const double w = std::exp(s[n] - mx) / sum;
                    for (std::int64_t d = 0; d < p.Dv; ++d) o[d] += w * at(p.v, keys[n], n2, d);
                }
                r.max[static_cast<std::size_t>(t * p.N1 + h)] = mx;
                r.sum[static_cast<std::size_t>(t * p.N1 + h)] = sum;
            }
    return r;
}

BackwardResult backward(const Problem& p) {
    BackwardResult r;
    r.dq.assign(static_cast<std::size_t>(p.T1 * p.N1 * p.Dk), 0.0);
    r.dk.assign(static_cast<std::size_t>(p.T2 * p.N2 * p.Dk), 0.0);
    r.dv.assign(static_cast<std::size_t>(p.T2 * p.N2 * p.Dv), 0.0);
    for (std::int64_t b = 0; b < p.batches.count(); ++b)
        for (std::int64_t t = p.batches.q[b]; t < p.batches.q[b + 1]; ++t)
            for (std::int64_t h = 0; h < p.N1; ++h) {
                const std::int64_t n2 = h / p.G;
                const auto keys = visible_keys(p, b, t, n2);
                if (keys.empty()) continue;
                const double mx = at(p.softmax_max, t, h, 0);
                const double sum = at(p.softmax_sum, t, h, 0);
                const double Dt = dot(p.out_grad, t, h, p.out, t, h, p.Dv);
                double* dq = &r.dq[static_cast<std::size_t>((t * p.N1 + h) * p.Dk)];
                for (const std::int64_t key : keys) {
                    const double s = p.scale * dot(p.q, t, h, p.k, key, n2, p.Dk);
                    const double P = std::exp(s - mx) / sum;
                    const double dP = dot(p.out_grad, t, h, p.v, key, n2, p.Dv);
                    const double dS = P * (dP - Dt);
                    double* dk = &r.dk[static_cast<std::size_t>((key * p.N2 + n2) * p.Dk)];
                    double* dv = &r.dv[static_cast<std::size_t>((key * p.N2 + n2) * p.Dv)];
                    for (std::int64_t d = 0; d < p.Dk; ++d) {
                        dq[d] += p.scale * dS * at(p.k, key, n2, d);
                        dk[d] += p.scale * dS * at(p.q, t, h, d);
                    }
                    for (std::int64_t d = 0; d < p.Dv; ++d) dv[d] += P * at(p.out_grad, t, h, d);
                }
            }
    return r;
}

}  // namespace opennsa::reference
