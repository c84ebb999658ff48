#include "ops/select_attention/reference.hpp"

#include <cmath>

#include "core/convert.hpp"
#include "kernels/portable.hpp"

namespace opennsa::detail::select_attention::reference {
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
    const Dense q(p.q), k(p.k), v(p.v);
    for (std::int64_t b = 0; b < p.batches.count(); ++b)
        for (std::int64_t t = p.batches.q[b]; t < p.batches.q[b + 1]; ++t)
            for (std::int64_t h = 0; h < p.N1; ++h) {
                const std::int64_t n2 = h / p.G;
                const auto keys = visible_keys(p, b, t, n2);
                if (keys.empty()) continue;  // out = max = sum = 0
                std::vector<double> s(keys.size());
                double mx = -INFINITY;
                for (std::size_t n = 0; n < keys.size(); ++n) {
                    s[n] = p.scale * dot(q.row(t, h), k.row(keys[n], n2), p.Dk);
                    mx = max_nan(mx, s[n]);  // a NaN score makes the row NaN
                }
                double sum = 0.0;
                for (double sn : s) sum += std::exp(sn - mx);
                double* o = &r.out[static_cast<std::size_t>((t * p.N1 + h) * p.Dv)];
                for (std::size_t n = 0; n < keys.size(); ++n) {
                    const double w = std::exp(s[n] - mx) / sum;
                    for (std::int64_t d = 0; d < p.Dv; ++d) o[d] += w * v.row(keys[n], n2)[d];
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
    const Dense q(p.q), k(p.k), v(p.v), o(p.out), dO(p.out_grad);
    for (std::int64_t b = 0; b < p.batches.count(); ++b)
        for (std::int64_t t = p.batches.q[b]; t < p.batches.q[b + 1]; ++t)
            for (std::int64_t h = 0; h < p.N1; ++h) {
                const std::int64_t n2 = h / p.G;
                const auto keys = visible_keys(p, b, t, n2);
                if (keys.empty()) continue;
                const double mx = at(p.softmax_max, t, h, 0);
                const double sum = at(p.softmax_sum, t, h, 0);
                const double Dt = dot(dO.row(t, h), o.row(t, h), p.Dv);
                double* dq = &r.dq[static_cast<std::size_t>((t * p.N1 + h) * p.Dk)];
                for (const std::int64_t key : keys) {
                    const double s = p.scale * dot(q.row(t, h), k.row(key, n2), p.Dk);
                    const double P = std::exp(s - mx) / sum;
                    const double dP = dot(dO.row(t, h), v.row(key, n2), p.Dv);
                    const double dS = P * (dP - Dt);
                    double* dk = &r.dk[static_cast<std::size_t>((key * p.N2 + n2) * p.Dk)];
                    double* dv = &r.dv[static_cast<std::size_t>((key * p.N2 + n2) * p.Dv)];
                    for (std::int64_t d = 0; d < p.Dk; ++d) {
                        dq[d] += p.scale * dS * k.row(key, n2)[d];
                        dk[d] += p.scale * dS * q.row(t, h)[d];
                    }
                    for (std::int64_t d = 0; d < p.Dv; ++d) dv[d] += P * dO.row(t, h)[d];
                }
            }
    return r;
}

}  // namespace opennsa::detail::select_attention::reference
