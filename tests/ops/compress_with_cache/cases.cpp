#include "ops/compress_with_cache/cases.hpp"

#include <algorithm>
#include <numeric>
#include <sstream>

#include "core/convert.hpp"

namespace cwc_test {

const char* layout_name(Layout l) {
    switch (l) {
        case Layout::contiguous: return "contiguous";
        case Layout::padded: return "padded";
        case Layout::strided: return "strided";
    }
    return "?";
}

// --- buffers ---------------------------------------------------------------------------------

std::size_t offset_bytes(const HostTensor& t, const std::vector<std::int64_t>& index) {
    std::int64_t e = 0;
    for (std::size_t d = 0; d < index.size(); ++d) e += index[d] * t.view.strides[d];
    const auto base = static_cast<const unsigned char*>(t.view.data) - t.bytes.data();
    return static_cast<std::size_t>(base + e * static_cast<std::int64_t>(opennsa::dtype_size(t.view.dtype)));
}

double get(const HostTensor& t, const std::vector<std::int64_t>& index) {
    const unsigned char* p = t.bytes.data() + offset_bytes(t, index);
    if (t.view.dtype == DType::i32) return *reinterpret_cast<const std::int32_t*>(p);
    return opennsa::detail::load_as_double(p, t.view.dtype);
}

void set(HostTensor& t, const std::vector<std::int64_t>& index, double v) {
    unsigned char* p = t.bytes.data() + offset_bytes(t, index);
    if (t.view.dtype == DType::i32)
        *reinterpret_cast<std::int32_t*>(p) = static_cast<std::int32_t>(v);
    else if (t.view.dtype == DType::f64)
        *reinterpret_cast<double*>(p) = v;
    else
        opennsa::detail::store_from_f32(p, t.view.dtype, static_cast<float>(v));
}

// --- Case ------------------------------------------------------------------------------------

std::int64_t Case::pages_of(std::int64_t b) const { return (lens[static_cast<std::size_t>(b)] + P - 1) / P; }

bool Case::triggered(std::int64_t b) const {
    return opennsa::compress_with_cache_triggered(lens[static_cast<std::size_t>(b)], l, d);
}

opennsa::CompressWithCacheParams Case::params() const {
    opennsa::CompressWithCacheParams p;
    p.block_size = l;
    p.stride = d;
    p.page_size = P;
    p.seq_lens = lens;
    return p;
}

std::string Case::describe() const {
    std::ostringstream s;
    s << "dtype=" << opennsa::dtype_name(dtype) << " N=" << N << " D=" << D << " l=" << l << " d=" << d << " P=" << P
      << " lens=[";
    for (std::size_t i = 0; i < lens.size(); ++i) s << (i ? "," : "") << lens[i];
    s << "] spare(pages,rows,cols)=" << spare_pages << "," << spare_rows << "," << spare_cols
      << (shuffle_pages ? " shuffled" : " in-order") << " layouts(in,cache)=" << layout_name(input) << ","
      << layout_name(cache) << (weight_transposed ? " weightT" : "") << " seed=" << seed;
    return s.str();
}

Case random_case(std::mt19937_64& rng, DType dtype, bool strided) {
    nsa_test::Draw draw{rng};
    auto uniform = [&](std::int64_t lo, std::int64_t hi) { return draw.uniform(lo, hi); };
    auto chance = [&](double p) { return draw.chance(p); };
    Case c;
    c.dtype = dtype;
    c.N = uniform(1, 8);
    c.D = chance(0.1) ? 192 : chance(0.1) ? 128 : uniform(1, 40);
    if (chance(0.2)) {
        c.l = 32, c.d = 16;
    } else {
        c.l = uniform(1, 40);
        c.d = chance(0.15) ? c.l : chance(0.15) ? 1 : uniform(1, c.l);
    }
    const std::int64_t sizes[] = {1, 2, 3, 7, 16, 64, 70};
    c.P = chance(0.5) ? sizes[uniform(0, 6)] : uniform(1, 70);
    c.lens.clear();
    for (std::int64_t b = uniform(1, 5); b > 0; --b) {
        const std::int64_t trig = c.l + uniform(0, 3) * c.d;  // a length that completes a window
        switch (uniform(0, 5)) {
            case 0: case 1: c.lens.push_back(trig); break;
            case 2: c.lens.push_back(trig + 1); break;
            case 3: c.lens.push_back(std::max<std::int64_t>(0, trig - 1)); break;
            case 4: c.lens.push_back(uniform(0, c.l - 1)); break;  // L_b < l
            default: c.lens.push_back(chance(0.5) ? 0 : uniform(0, 3 * c.l + c.d)); break;
        }
    }
    c.spare_pages = uniform(0, 3);
    c.spare_rows = uniform(0, 4);
    c.spare_cols = uniform(0, 2);
    c.shuffle_pages = chance(0.8);
    if (strided) {
        c.input = static_cast<Layout>(uniform(0, 2));
        c.cache = static_cast<Layout>(uniform(0, 2));
        c.weight_transposed = chance(0.5);
    }
    c.seed = rng();
    return c;
}

// --- Tensors ---------------------------------------------------------------------------------

namespace {

std::vector<std::int64_t> input_strides(const Case& c) {
    const std::int64_t N = c.N, D = c.D, P = c.P;
    switch (c.input) {
        case Layout::padded: {
            const std::int64_t row = N * (D + 3) + 5;
            return {P * row + 7, row, D + 3, 1};
        }
        case Layout::strided: return {P * N * 2 * D, N * 2 * D, 2 * D, 2};
        default: return {P * N * D, N * D, D, 1};
    }
}

std::vector<std::int64_t> cache_strides(const Case& c) {
    const std::int64_t N = c.N, D = c.D;
    switch (c.cache) {
        case Layout::padded: return {N * (D + 2) + 1, D + 2, 1};
        case Layout::strided: return {N * (2 * D + 1), 2 * D + 1, -2};
        default: return {N * D, D, 1};
    }
}

}  // namespace

Tensors::Tensors(const Case& cs) : c(cs), params(cs.params()) {
    std::mt19937_64 rng(c.seed);
    std::int64_t used = 0, widest = 0;
    for (std::int64_t b = 0; b < c.B(); ++b) {
        used += c.pages_of(b);
        widest = std::max(widest, c.pages_of(b));
    }
    pages = used + c.spare_pages;
    cols = widest + c.spare_cols;
    R = c.B() + c.spare_rows;
    input = guarded_tensor(c.dtype, {pages, c.P, c.N, c.D}, input_strides(c));
    weight = c.weight_transposed ? guarded_tensor(c.dtype, {c.l, c.N}, {1, c.l}) : guarded_tensor(c.dtype, {c.l, c.N}, {c.N, 1});
    slots = guarded_tensor(DType::i32, {c.B()}, {1});
    table = guarded_tensor(DType::i32, {c.B(), cols}, {cols, 1});
    cache = guarded_tensor(c.dtype, {R, c.N, c.D}, cache_strides(c));

    std::normal_distribution<double> nd(0.0, 1.0);
    for (std::int64_t pg = 0; pg < pages; ++pg)
        for (std::int64_t r = 0; r < c.P; ++r)
            for (std::int64_t h = 0; h < c.N; ++h)
                for (std::int64_t e = 0; e < c.D; ++e) set(input, {pg, r, h, e}, nd(rng));
    for (std::int64_t r = 0; r < c.l; ++r)
        for (std::int64_t h = 0; h < c.N; ++h) set(weight, {r, h}, nd(rng) / std::sqrt(double(c.l)));

    // Pages: a shuffled (or ordered) pool, each batch takes its own. Entries no window reads hold
    // garbage (never read): -1, a negative number or a page past the cache.
    std::vector<std::int32_t> pool(static_cast<std::size_t>(pages));
    std::iota(pool.begin(), pool.end(), 0);
    if (c.shuffle_pages) std::shuffle(pool.begin(), pool.end(), rng);
    const std::int32_t garbage[] = {-1, -7, static_cast<std::int32_t>(pages + 3)};
    std::size_t next = 0;
    for (std::int64_t b = 0; b < c.B(); ++b)
        for (std::int64_t j = 0; j < cols; ++j) {
            const bool covers = j < c.pages_of(b);
            const std::int64_t L = c.lens[static_cast<std::size_t>(b)];
            const bool read = c.triggered(b) && j >= (L - c.l) / c.P && j <= (L - 1) / c.P;
            const std::int32_t page = covers ? pool[next++] : -1;
            set_page(b, j, read || (covers && !c.garble_unread) ? page : garbage[std::uniform_int_distribution<int>(0, 2)(rng)]);
        }

    // Slots: distinct rows for the triggered batches; the others anything (never read).
    std::vector<std::int32_t> rows(static_cast<std::size_t>(R));
    std::iota(rows.begin(), rows.end(), 0);
    std::shuffle(rows.begin(), rows.end(), rng);
    for (std::int64_t b = 0; b < c.B(); ++b) {
        if (c.triggered(b)) {
            set_slot(b, rows[static_cast<std::size_t>(b)]);
            continue;
        }
        const std::int32_t ignored[] = {-1, rows[0], static_cast<std::int32_t>(R + 5), rows[static_cast<std::size_t>(b)]};
        set_slot(b, ignored[std::uniform_int_distribution<int>(0, 3)(rng)]);
    }
    cache.poison();
}

opennsa::CompressWithCacheArgs Tensors::args() const {
    return {input.view, weight.view, slots.view, table.view, cache.view};
}

std::int64_t Tensors::slot(std::int64_t b) const { return static_cast<std::int64_t>(get(slots, {b})); }
void Tensors::set_slot(std::int64_t b, std::int32_t v) { set(slots, {b}, v); }
std::int64_t Tensors::page(std::int64_t b, std::int64_t j) const { return static_cast<std::int64_t>(get(table, {b, j})); }
void Tensors::set_page(std::int64_t b, std::int64_t j, std::int32_t v) { set(table, {b, j}, v); }

std::vector<double> Tensors::reference() const {
    return cwc::reference::written_rows(cwc::validate(args(), params));
}

std::vector<double> Tensors::written() const {
    std::vector<double> out;
    for (std::int64_t b = 0; b < c.B(); ++b)
        if (c.triggered(b))
            for (std::int64_t h = 0; h < c.N; ++h)
                for (std::int64_t e = 0; e < c.D; ++e) out.push_back(get(cache, {slot(b), h, e}));
    return out;
}

::testing::AssertionResult Tensors::only_slots_written() const {
    const std::size_t elt = opennsa::dtype_size(c.dtype);
    std::vector<char> inside(cache.bytes.size(), 0);
    for (std::int64_t b = 0; b < c.B(); ++b) {
        if (!c.triggered(b)) continue;
        for (std::int64_t h = 0; h < c.N; ++h)
            for (std::int64_t e = 0; e < c.D; ++e) {
                const std::size_t off = offset_bytes(cache, {slot(b), h, e});
                bool poisoned = true;
                for (std::size_t k = 0; k < elt; ++k) {
                    poisoned = poisoned && cache.bytes[off + k] == 0xFF;
                    inside[off + k] = 1;
                }
                if (poisoned)
                    return ::testing::AssertionFailure()
                           << "outputCache[" << slot(b) << ", " << h << ", " << e << "] (batch " << b << ") was not written";
            }
    }
    for (std::size_t k = 0; k < cache.bytes.size(); ++k)
        if (!inside[k] && cache.bytes[k] != 0xFF)
            return ::testing::AssertionFailure() << "byte " << k << " of the cache buffer outside the triggered slots was written";
    return ::testing::AssertionSuccess();
}

std::vector<std::vector<unsigned char>> input_bytes(const Tensors& t) {
    return {t.input.bytes, t.weight.bytes, t.slots.bytes, t.table.bytes};
}

}  // namespace cwc_test
