#include "ops/compress/cases.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "core/convert.hpp"

namespace compress_test {

const char* layout_name(Layout l) {
    switch (l) {
        case Layout::contiguous: return "contiguous";
        case Layout::gapped: return "gapped";
        case Layout::reversed: return "reversed";
        case Layout::inner_strided: return "inner_strided";
        case Layout::broadcast: return "broadcast";
    }
    return "?";
}

// --- Strided ---------------------------------------------------------------------------------

Strided Strided::make(DType dtype, std::vector<std::int64_t> shape, Layout layout) {
    Strided s;
    const int rank = static_cast<int>(shape.size());
    std::int64_t st[3] = {0, 0, 0};
    if (rank == 2) {
        const std::int64_t R = shape[0], C = shape[1];
        switch (layout) {
            case Layout::contiguous: st[0] = C, st[1] = 1; break;
            case Layout::gapped: st[0] = 1, st[1] = R + 2; break;
            case Layout::reversed: st[0] = -(C + 1), st[1] = 1; break;
            case Layout::inner_strided: st[0] = 2 * C + 1, st[1] = -2; break;
            case Layout::broadcast: st[0] = 0, st[1] = 1; break;
        }
    } else {
        const std::int64_t T = shape[0], N = shape[1], D = shape[2];
        switch (layout) {
            case Layout::contiguous: st[0] = N * D, st[1] = D, st[2] = 1; break;
            case Layout::gapped: st[0] = D + 3, st[1] = T * (D + 3), st[2] = 1; break;
            case Layout::reversed: st[0] = -(N * (D + 1)), st[1] = D + 1, st[2] = 1; break;
            case Layout::inner_strided: st[0] = N * (2 * D + 1), st[1] = 2 * D + 1, st[2] = -2; break;
            case Layout::broadcast: st[0] = D, st[1] = 0, st[2] = 1; break;
        }
    }
    nsa_test::HostTensor h = nsa_test::guarded_tensor(dtype, shape, {st, st + rank});
    s.view = h.view;
    s.bytes = std::move(h.bytes);  // the same heap buffer: view.data stays valid
    return s;
}

std::size_t Strided::offset_bytes(std::int64_t i, std::int64_t j, std::int64_t k) const {
    std::int64_t e = i * view.strides[0] + j * view.strides[1];
    if (view.rank == 3) e += k * view.strides[2];
    const auto base = static_cast<const unsigned char*>(view.data) - bytes.data();
    return static_cast<std::size_t>(base + e * static_cast<std::int64_t>(opennsa::dtype_size(view.dtype)));
}

double Strided::get(std::int64_t i, std::int64_t j, std::int64_t k) const {
    return opennsa::detail::load_as_double(bytes.data() + offset_bytes(i, j, k), view.dtype);
}

void Strided::set(std::int64_t i, std::int64_t j, std::int64_t k, double v) {
    void* p = bytes.data() + offset_bytes(i, j, k);
    if (view.dtype == DType::f64)
        *static_cast<double*>(p) = v;
    else
        opennsa::detail::store_from_f32(p, view.dtype, static_cast<float>(v));
}

void Strided::fill_normal(std::mt19937_64& rng) {
    std::normal_distribution<double> nd(0.0, 1.0);
    for (std::int64_t i = 0; i < dim(0); ++i)
        for (std::int64_t j = 0; j < dim(1); ++j)
            for (std::int64_t k = 0; k < dim(2); ++k) set(i, j, k, nd(rng));
}

std::vector<double> Strided::dense() const {
    std::vector<double> out;
    out.reserve(static_cast<std::size_t>(dim(0) * dim(1) * dim(2)));
    for (std::int64_t i = 0; i < dim(0); ++i)
        for (std::int64_t j = 0; j < dim(1); ++j)
            for (std::int64_t k = 0; k < dim(2); ++k) out.push_back(get(i, j, k));
    return out;
}

void Strided::poison() { std::fill(bytes.begin(), bytes.end(), 0xFF); }

bool Strided::all_poisoned() const {
    return std::all_of(bytes.begin(), bytes.end(), [](unsigned char b) { return b == 0xFF; });
}

::testing::AssertionResult Strided::fully_written() const {
    const std::size_t elt = opennsa::dtype_size(view.dtype);
    std::vector<char> inside(bytes.size(), 0);
    for (std::int64_t i = 0; i < dim(0); ++i)
        for (std::int64_t j = 0; j < dim(1); ++j)
            for (std::int64_t k = 0; k < dim(2); ++k) {
                const std::size_t off = offset_bytes(i, j, k);
                bool poisoned = true;
                for (std::size_t b = 0; b < elt; ++b) {
                    poisoned = poisoned && bytes[off + b] == 0xFF;
                    inside[off + b] = 1;
                }
                if (poisoned)
                    return ::testing::AssertionFailure() << "element [" << i << ", " << j << ", " << k
                                                         << "] was not written";
            }
    for (std::size_t b = 0; b < bytes.size(); ++b)
        if (!inside[b] && bytes[b] != 0xFF)
            return ::testing::AssertionFailure() << "byte " << b << " outside the view was written";
    return ::testing::AssertionSuccess();
}

// --- Case ------------------------------------------------------------------------------------

std::int64_t Case::T() const {
    std::int64_t t = pad;
    for (std::int64_t x : lens) t += x;
    return t;
}

opennsa::CompressParams Case::params() const {
    opennsa::CompressParams p;
    p.block_size = l;
    p.stride = d;
    p.seq_len_type = seq_type;
    if (seq_type == opennsa::kSeqLenPerBatch) {
        p.seq_lens = lens;
    } else {
        std::int64_t end = 0;
        if (leading_zero) p.seq_lens.push_back(0);
        for (std::int64_t x : lens) p.seq_lens.push_back(end += x);
    }
    return p;
}

std::string Case::describe() const {
    std::ostringstream s;
    s << "dtype=" << opennsa::dtype_name(dtype) << " N=" << N << " D=" << D << " l=" << l << " d=" << d << " lens=[";
    for (std::size_t i = 0; i < lens.size(); ++i) s << (i ? "," : "") << lens[i];
    s << "] pad=" << pad << " type=" << seq_type << (leading_zero ? " leading0" : "") << " layouts(in,w,out,dO,dx,dw)="
      << layout_name(input) << "," << layout_name(weight) << "," << layout_name(output) << ","
      << layout_name(output_grad) << "," << layout_name(input_grad) << "," << layout_name(weight_grad)
      << " seed=" << seed;
    return s.str();
}

Case random_case(std::mt19937_64& rng, DType dtype, bool strided) {
    auto uniform = [&](std::int64_t lo, std::int64_t hi) {
        return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng);
    };
    auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
    Case c;
    c.dtype = dtype;
    c.l = uniform(1, 40);
    c.d = chance(0.15) ? c.l : chance(0.15) ? 1 : uniform(1, c.l);
    c.N = uniform(1, 5);
    c.D = chance(0.1) ? 192 : uniform(1, 40);
    c.lens.clear();
    for (std::int64_t b = uniform(1, 4); b > 0; --b) {
        if (chance(0.1))
            c.lens.push_back(0);
        else if (chance(0.2))
            c.lens.push_back(uniform(0, c.l - 1));
        else
            c.lens.push_back(uniform(c.l, 3 * c.l + c.d));
    }
    c.pad = uniform(0, 3);
    c.seq_type = chance(0.5) ? opennsa::kSeqLenCumulative : opennsa::kSeqLenPerBatch;
    c.leading_zero = c.seq_type == opennsa::kSeqLenCumulative && chance(0.3);
    if (strided) {
        auto any = [&](bool input) { return static_cast<Layout>(uniform(0, input ? 4 : 3)); };
        c.input = any(true);
        c.weight = any(true);
        c.output_grad = any(true);
        c.output = any(false);
        c.input_grad = any(false);
        c.weight_grad = any(false);
    }
    c.seed = rng();
    return c;
}

// --- Tensors ---------------------------------------------------------------------------------

Tensors::Tensors(const Case& cs) : c(cs), params(cs.params()) {
    const std::int64_t T = c.T();
    Tc = opennsa::compressed_token_count(T, params);
    input = Strided::make(c.dtype, {T, c.N, c.D}, c.input);
    weight = Strided::make(c.dtype, {c.l, c.N}, c.weight);
    output = Strided::make(c.dtype, {Tc, c.N, c.D}, c.output);
    output_grad = Strided::make(c.dtype, {Tc, c.N, c.D}, c.output_grad);
    input_grad = Strided::make(c.dtype, {T, c.N, c.D}, c.input_grad);
    weight_grad = Strided::make(c.dtype, {c.l, c.N}, c.weight_grad);
    std::mt19937_64 rng(c.seed);
    input.fill_normal(rng);
    weight.fill_normal(rng);
    output_grad.fill_normal(rng);
    poison_outputs();
}

opennsa::CompressArgs Tensors::forward_args() const { return {input.view, weight.view, output.view}; }

opennsa::CompressGradArgs Tensors::backward_args() const {
    return {output_grad.view, input.view, weight.view, input_grad.view, weight_grad.view};
}

void Tensors::poison_outputs() {
    output.poison();
    input_grad.poison();
    weight_grad.poison();
}

std::vector<double> Tensors::reference_forward() const {
    return cmp::reference::forward(cmp::validate_forward(forward_args(), params));
}

cmp::reference::BackwardResult Tensors::reference_backward() const {
    return cmp::reference::backward(cmp::validate_backward(backward_args(), params));
}

::testing::AssertionResult same_nan_pattern(const std::vector<double>& got, const std::vector<double>& ref,
                                            const char* what) {
    if (got.size() != ref.size())
        return ::testing::AssertionFailure() << what << ": size " << got.size() << " vs " << ref.size();
    for (std::size_t i = 0; i < got.size(); ++i)
        if (std::isnan(got[i]) != std::isnan(ref[i]))
            return ::testing::AssertionFailure() << what << "[" << i << "] = " << got[i] << " but the reference has "
                                                 << ref[i];
    return ::testing::AssertionSuccess();
}

}  // namespace compress_test
