#include "ops/compress/reference.hpp"

#include "core/convert.hpp"

namespace opennsa::detail::compress::reference {
namespace {

double at(const TensorView& t, std::int64_t i, std::int64_t j, std::int64_t k = 0) {
    const auto* base = static_cast<const char*>(t.data);
    std::int64_t offset = i * t.strides[0] + j * t.strides[1];
    if (t.rank == 3) offset += k * t.strides[2];
    return load_as_double(base + offset * static_cast<std::int64_t>(dtype_size(t.dtype)), t.dtype);
}

std::size_t idx(const Problem& p, std::int64_t row, std::int64_t h, std::int64_t e) {
    return static_cast<std::size_t>((row * p.N + h) * p.D + e);
}

}  // namespace

std::vector<double> forward(const Problem& p) {
    std::vector<double> out(static_cast<std::size_t>(p.Tc * p.N * p.D), 0.0);
    const Batches& b = p.batches;
    for (std::int64_t batch = 0; batch < b.count(); ++batch)
        for (std::int64_t c = 0; c < b.compressed(batch); ++c)
            for (std::int64_t h = 0; h < p.N; ++h)
                for (std::int64_t e = 0; e < p.D; ++e) {
                    double s = 0.0;
                    for (std::int64_t r = 0; r < p.l; ++r)
                        s += at(p.weight, r, h) * at(p.input, b.in[batch] + c * p.d + r, h, e);
                    out[idx(p, b.out[batch] + c, h, e)] = s;
                }
    return out;
}

BackwardResult backward(const Problem& p) {
    BackwardResult g;
    g.input_grad.assign(static_cast<std::size_t>(p.T * p.N * p.D), 0.0);
    g.weight_grad.assign(static_cast<std::size_t>(p.l * p.N), 0.0);
    const Batches& b = p.batches;
    for (std::int64_t batch = 0; batch < b.count(); ++batch)
        for (std::int64_t c = 0; c < b.compressed(batch); ++c)
            for (std::int64_t r = 0; r < p.l; ++r) {
                const std::int64_t t = b.in[batch] + c * p.d + r;
                for (std::int64_t h = 0; h < p.N; ++h) {
                    const double w = at(p.weight, r, h);
                    double wg = 0.0;
                    for (std::int64_t e = 0; e < p.D; ++e) {
                        const double go = at(p.output_grad, b.out[batch] + c, h, e);
                        g.input_grad[idx(p, t, h, e)] += w * go;
                        wg += go * at(p.input, t, h, e);
                    }
                    g.weight_grad[static_cast<std::size_t>(r * p.N + h)] += wg;
                }
            }
    return g;
}

}  // namespace opennsa::detail::compress::reference
