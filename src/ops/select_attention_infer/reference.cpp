#include "ops/select_attention_infer/reference.hpp"

#include <cmath>

#include "core/convert.hpp"
#include "kernels/portable.hpp"

namespace opennsa::detail::select_attention_infer::reference {
namespace {

double load(const void* base, std::int64_t offset, DType t) {
    return load_as_double(static_cast<const char*>(base) + offset * static_cast<std::int64_t>(dtype_size(t)), t);
}

// Element e of head n2 of raw token pos of batch b, read through the block table.
double cached(const Problem& p, const PagedCache& c, std::int64_t b, std::int64_t pos, std::int64_t n2,
              std::int64_t e) {
    const std::int64_t page = p.table.at(b, pos / c.page_size);
    const TensorView& v = c.view;
    return load(v.data, page * v.strides[0] + (pos % c.page_size) * v.strides[1] + n2 * c.head_stride() +
                            e * c.elem_stride(), v.dtype);
}

double query(const Problem& p, std::int64_t b, std::int64_t s, std::int64_t h, std::int64_t e) {
    const TokenRows& q = p.q;
    const std::int64_t offset =
        b * q.batch + (p.first[static_cast<std::size_t>(b)] + s) * q.token + h * q.head + e * q.elem;
    return load(q.data, offset, p.dtype);
}

}  // namespace

std::vector<std::int64_t> visible_positions(const Problem& p, std::int64_t b, std::int64_t s, std::int64_t n2) {
    const std::int64_t end = p.visible_end(b, s);
    std::vector<std::int64_t> keys;
    for (std::int64_t j = 0; j < p.sel_count; ++j) {
        const std::int64_t x = p.slot(b, s, n2, j);
        if (x == -1) continue;
        for (std::int64_t r = 0; r < p.sel_len && x * p.sel_len + r < end; ++r) keys.push_back(x * p.sel_len + r);
    }
    return keys;
}

std::int64_t output_row(const Problem& p, std::int64_t b, std::int64_t s) {
    return p.layout == Layout::tnd ? p.first[static_cast<std::size_t>(b)] + s : b * p.Q + s;
}

std::vector<double> forward(const Problem& p) {
    const std::int64_t rows = p.layout == Layout::tnd ? p.Q : p.B * p.Q;
    std::vector<double> out(static_cast<std::size_t>(rows * p.N1 * p.Dv), 0.0);
    for (std::int64_t b = 0; b < p.B; ++b)
        for (std::int64_t s = 0; s < p.q_len[static_cast<std::size_t>(b)]; ++s)
            for (std::int64_t h = 0; h < p.N1; ++h) {
                const std::int64_t n2 = h / p.G;
                const auto keys = visible_positions(p, b, s, n2);
                if (keys.empty()) continue;  // output 0
                std::vector<double> q(static_cast<std::size_t>(p.Dk));
                for (std::int64_t e = 0; e < p.Dk; ++e) q[static_cast<std::size_t>(e)] = query(p, b, s, h, e);
                std::vector<double> sc(keys.size());
                double mx = -INFINITY;
                for (std::size_t n = 0; n < keys.size(); ++n) {
                    double dot = 0.0;
                    for (std::int64_t e = 0; e < p.Dk; ++e)
                        dot += q[static_cast<std::size_t>(e)] * cached(p, p.key, b, keys[n], n2, e);
                    sc[n] = p.scale * dot;
                    mx = max_nan(mx, sc[n]);
                }
                double sum = 0.0;
                for (double x : sc) sum += std::exp(x - mx);
                double* o = &out[static_cast<std::size_t>((output_row(p, b, s) * p.N1 + h) * p.Dv)];
                for (std::size_t n = 0; n < keys.size(); ++n) {
                    const double w = std::exp(sc[n] - mx) / sum;
                    for (std::int64_t e = 0; e < p.Dv; ++e) o[e] += w * cached(p, p.value, b, keys[n], n2, e);
                }
            }
    return out;
}

}  // namespace opennsa::detail::select_attention_infer::reference
