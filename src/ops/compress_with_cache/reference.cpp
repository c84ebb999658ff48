#include "ops/compress_with_cache/reference.hpp"

#include "core/convert.hpp"

namespace opennsa::detail::compress_with_cache::reference {
namespace {

double value_at(const TensorView& t, std::int64_t offset) {
    const auto* base = static_cast<const char*>(t.data);
    return load_as_double(base + offset * static_cast<std::int64_t>(dtype_size(t.dtype)), t.dtype);
}

}  // namespace

std::vector<double> written_rows(const Problem& p) {
    std::vector<double> out;
    out.reserve(p.triggered.size() * static_cast<std::size_t>(p.N * p.D));
    const TensorView& in = p.input.view;
    for (std::int64_t b : p.triggered)
        for (std::int64_t h = 0; h < p.N; ++h)
            for (std::int64_t e = 0; e < p.D; ++e) {
                double s = 0.0;
                for (std::int64_t r = 0; r < p.l; ++r) {
                    const std::int64_t pos = p.window_start(b) + r;
                    const std::int64_t page = p.table.at(b, pos / p.input.page_size);
                    const std::int64_t row = pos % p.input.page_size;
                    const double w = value_at(p.weight, r * p.weight.strides[0] + h * p.weight.strides[1]);
                    s += w * value_at(in, page * in.strides[0] + row * in.strides[1] + h * in.strides[2] +
                                              e * in.strides[3]);
                }
                out.push_back(s);
            }
    return out;
}

}  // namespace opennsa::detail::compress_with_cache::reference
