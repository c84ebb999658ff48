#include "ops/compress_attention_infer/reference.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "core/convert.hpp"
#include "kernels/portable.hpp"
#include "ops/compress_attention/reference.hpp"

namespace opennsa::detail::compress_attention_infer::reference {
namespace {

std::size_t idx(std::int64_t i) { return static_cast<std::size_t>(i); }

double at(const TensorView& t, std::int64_t i, std::int64_t j, std::int64_t k) {
    const auto* base = static_cast<const char*>(t.data);
    const std::int64_t offset = i * t.strides[0] + j * t.strides[1] + k * t.strides[2];
    return load_as_double(base + offset * static_cast<std::int64_t>(dtype_size(t.dtype)), t.dtype);
}

// Compressed token j of batch b, kv head n2, as doubles, read through the block table.
std::vector<double> cache_row(const Problem& p, const PagedCache& c, std::int64_t b, std::int64_t j, std::int64_t n2) {
    const TensorView head = c.head_view(n2);
    const std::int64_t page = p.table.at(b, j / c.page_size), r = j % c.page_size;
    std::vector<double> x(idx(c.dim));
    for (std::int64_t e = 0; e < c.dim; ++e) x[idx(e)] = at(head, page, r, e);
    return x;
}

// The spec's rules written out again, apart from the Problem's (whose prefix form the operator
// uses): compressed token j is visible to token s of batch b; the block count NS_b; the forced set.
bool visible(const Problem& p, std::int64_t b, std::int64_t s, std::int64_t j) {
    if (!p.multi_token || p.raw_len.empty()) return true;
    const long double position = static_cast<long double>(p.raw_len[idx(b)]) - static_cast<long double>(p.q_len[idx(b)]) +
                                 static_cast<long double>(s);
    return static_cast<long double>(j) * static_cast<long double>(p.d) + static_cast<long double>(p.l) <= position + 1;
}

std::int64_t block_count(const Problem& p, std::int64_t b) {
    const std::int64_t C = p.c_len[idx(b)];
    if (C == 0) return 0;
    const long double span = static_cast<long double>(C - 1) * static_cast<long double>(p.d) + static_cast<long double>(p.l);
    return static_cast<std::int64_t>(std::ceil(span / static_cast<long double>(p.sel_len)));
}

}  // namespace

std::int64_t flat_row(const Problem& p, std::int64_t b, std::int64_t s) {
    return p.bsnd ? b * p.Q + s : p.q_start[idx(b)] + s;
}

Result forward(const Problem& p) {
    Result r;
    r.out.assign(idx(p.rows * p.N1 * p.Dv), 0.0);
    for (std::int64_t b = 0; b < p.B; ++b) {
        r.ns.push_back(block_count(p, b));
        r.max_ns = std::max(r.max_ns, r.ns.back());
    }
    r.score.assign(idx(p.rows * p.N2 * r.max_ns), 0.0);
    r.topk.assign(idx(p.rows * p.N2 * p.sel_count), -1);
    const double scale = static_cast<float>(p.scale);  // applied in fp32, as CANN converts it
    for (std::int64_t b = 0; b < p.B; ++b) {
        const std::int64_t C = p.c_len[idx(b)], ns = r.ns[idx(b)];
        const TensorView q = p.batch_view(p.q, b);
        std::vector<std::vector<double>> keys, values;
        for (std::int64_t n2 = 0; n2 < p.N2; ++n2)
            for (std::int64_t j = 0; j < C; ++j) {
                keys.push_back(cache_row(p, p.key, b, j, n2));
                values.push_back(cache_row(p, p.value, b, j, n2));
            }
        for (std::int64_t s = 0; s < p.q_len[idx(b)]; ++s) {
            const std::int64_t row = flat_row(p, b, s);
            std::int64_t vis = 0;  // the visible tokens form a prefix (checked)
            while (vis < C && visible(p, b, s, vis)) ++vis;
            for (std::int64_t j = vis; j < C; ++j)
                if (visible(p, b, s, j)) throw std::logic_error("reference: the visible tokens are not a prefix");
            for (std::int64_t n2 = 0; n2 < p.N2; ++n2) {
                const auto key = [&](std::int64_t j) -> const std::vector<double>& { return keys[idx(n2 * C + j)]; };
                const auto value = [&](std::int64_t j) -> const std::vector<double>& { return values[idx(n2 * C + j)]; };
                std::vector<double> psum(idx(C), 0.0);  // fp64 probabilities summed over the group
                for (std::int64_t h = n2 * p.G; h < (n2 + 1) * p.G && vis > 0; ++h) {
                    std::vector<double> sc(idx(vis));
                    double mx = -INFINITY;
                    for (std::int64_t j = 0; j < vis; ++j) {
                        double dot = 0.0;
                        for (std::int64_t e = 0; e < p.Dk; ++e) dot += at(q, s, h, e) * key(j)[idx(e)];
                        sc[idx(j)] = scale * dot;
                        mx = max_nan(mx, sc[idx(j)]);
                    }
                    double sum = 0.0;
                    for (double x : sc) sum += std::exp(x - mx);
                    double* o = &r.out[idx((row * p.N1 + h) * p.Dv)];
                    for (std::int64_t j = 0; j < vis; ++j) {
                        const double P = std::exp(sc[idx(j)] - mx) / sum;
                        psum[idx(j)] += P;
                        for (std::int64_t e = 0; e < p.Dv; ++e) o[e] += P * value(j)[idx(e)];
                    }
                }
                const std::vector<double> score = compress_attention::reference::block_scores(psum, ns, p.m, p.n);
                std::vector<std::uint8_t> forced(idx(ns), 0);
                for (std::int64_t J = 0; J < ns; ++J) {
                    forced[idx(J)] = J == 0 || J == ns - 2 || J == ns - 1;
                    r.score[idx((row * p.N2 + n2) * r.max_ns + J)] = score[idx(J)];
                }
                const std::vector<std::int32_t> top = compress_attention::reference::rank(score, forced, p.sel_count);
                std::copy(top.begin(), top.end(), r.topk.begin() + (row * p.N2 + n2) * p.sel_count);
            }
        }
    }
    return r;
}

}  // namespace opennsa::detail::compress_attention_infer::reference
