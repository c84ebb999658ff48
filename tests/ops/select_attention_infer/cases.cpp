#include "ops/select_attention_infer/cases.hpp"

#include <algorithm>
#include <numeric>
#include <sstream>

namespace nsa_test {

// --- HostNd ----------------------------------------------------------------------------------

HostNd HostNd::make(DType dtype, std::vector<std::int64_t> shape, int storage) {
    HostNd h;
    const int rank = static_cast<int>(shape.size());
    h.view.dtype = dtype;
    h.view.rank = rank;
    // Storage dims, innermost last; then map each view dim to its storage stride.
    std::vector<std::int64_t> dims = shape;
    std::vector<int> order(static_cast<std::size_t>(rank));
    std::iota(order.begin(), order.end(), 0);
    std::int64_t last_mult = 1;
    if (storage == 1 && rank >= 2) {
        std::swap(order[0], order[1]);
        dims[static_cast<std::size_t>(rank - 1)] += 3;
    } else if (storage == 2) {
        last_mult = 2;
    }
    std::vector<std::int64_t> stride(static_cast<std::size_t>(rank));
    std::int64_t run = last_mult;
    for (int i = rank - 1; i >= 0; --i) {
        const int d = order[static_cast<std::size_t>(i)];
        stride[static_cast<std::size_t>(d)] = run;
        run *= std::max<std::int64_t>(dims[static_cast<std::size_t>(d)], 1);
    }
    for (int d = 0; d < rank; ++d) {
        h.view.shape[d] = shape[static_cast<std::size_t>(d)];
        h.view.strides[d] = stride[static_cast<std::size_t>(d)];
    }
    h.bytes.assign(static_cast<std::size_t>(run) * opennsa::dtype_size(dtype), 0xFF);
    h.view.data = h.bytes.data();
    return h;
}

std::int64_t HostNd::numel() const {
    std::int64_t n = 1;
    for (int d = 0; d < view.rank; ++d) n *= view.shape[d];
    return n;
}

std::int64_t HostNd::offset(const std::vector<std::int64_t>& idx) const {
    std::int64_t o = 0;
    for (int d = 0; d < view.rank; ++d) o += idx[static_cast<std::size_t>(d)] * view.strides[d];
    return o;
}

double HostNd::get(const std::vector<std::int64_t>& idx) const {
    return opennsa::detail::load_as_double(bytes.data() + offset(idx) * std::int64_t(opennsa::dtype_size(view.dtype)),
                                           view.dtype);
}

void HostNd::set(const std::vector<std::int64_t>& idx, double v) {
    unsigned char* at = bytes.data() + offset(idx) * std::int64_t(opennsa::dtype_size(view.dtype));
    if (view.dtype == DType::i32) {
        const auto x = static_cast<std::int32_t>(v);
        std::memcpy(at, &x, sizeof x);
    } else if (view.dtype == DType::f64) {
        std::memcpy(at, &v, sizeof v);
    } else {
        opennsa::detail::store_from_f32(at, view.dtype, static_cast<float>(v));
    }
}

void HostNd::poison() { std::fill(bytes.begin(), bytes.end(), 0xFF); }

::testing::AssertionResult HostNd::fully_written() const {
    const std::size_t elt = opennsa::dtype_size(view.dtype);
    std::vector<char> inside(bytes.size(), 0);
    ::testing::AssertionResult result = ::testing::AssertionSuccess();
    bool failed = false;
    for_each([&](const std::vector<std::int64_t>& idx) {
        const std::size_t off = static_cast<std::size_t>(offset(idx)) * elt;
        bool poisoned = true;
        for (std::size_t b = 0; b < elt; ++b) {
            poisoned = poisoned && bytes[off + b] == 0xFF;
            inside[off + b] = 1;
        }
        if (poisoned && !failed) {
            failed = true;
            std::ostringstream s;
            for (auto i : idx) s << i << ' ';
            result = ::testing::AssertionFailure() << "element [" << s.str() << "] was not written";
        }
    });
    if (failed) return result;
    for (std::size_t b = 0; b < bytes.size(); ++b)
        if (!inside[b] && bytes[b] != 0xFF)
            return ::testing::AssertionFailure() << "byte " << b << " outside the view was written";
    return ::testing::AssertionSuccess();
}

// --- Cases -----------------------------------------------------------------------------------

std::int64_t SelInferCase::rows_Q() const {
    if (Q > 0) return Q;
    std::int64_t m = 1;
    for (auto n : q_lens) m = std::max(m, n);
    return m;
}

std::int64_t SelInferCase::T() const { return std::accumulate(q_lens.begin(), q_lens.end(), std::int64_t{0}); }

std::string SelInferCase::describe() const {
    std::ostringstream s;
    s << opennsa::dtype_name(dtype) << ' ' << layout << " N1=" << N1 << " N2=" << N2 << " Dk=" << Dk << " Dv=" << Dv
      << " sel=" << sel << " k=" << k << " P=" << P << " q_lens=[";
    for (auto n : q_lens) s << n << ' ';
    s << "] kv_lens=[";
    for (auto n : kv_lens) s << n << ' ';
    s << "] Q=" << rows_Q() << " pass_q_lens=" << pass_q_lens << " topk3=" << topk3 << " rank4=" << cache_rank4
      << " storage=" << storage << " seed=" << seed;
    return s.str();
}

SelInferCase random_sel_infer_case(std::mt19937_64& rng, DType dtype) {
    auto pick = [&](std::initializer_list<std::int64_t> xs) {
        return *(xs.begin() + std::uniform_int_distribution<std::size_t>(0, xs.size() - 1)(rng));
    };
    auto uniform = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
    auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
    SelInferCase c;
    c.dtype = dtype;
    c.seed = rng();
    c.layout = pick({0, 1, 2}) == 0 ? "BSND" : (chance(0.5) ? "BSH" : "TND");
    const std::int64_t G = pick({1, 1, 2, 3, 4, 8, 16, 33});
    c.N2 = G >= 16 ? pick({1, 2}) : pick({1, 2, 3});
    c.N1 = G * c.N2;
    c.Dk = pick({1, 5, 8, 16, 24, 33, 64});
    c.Dv = chance(0.5) ? c.Dk : std::min(c.Dk, pick({1, 7, 16, 32}));
    c.sel = pick({1, 3, 8, 16, 32, 64, 100});
    c.k = uniform(1, 10);
    c.P = pick({1, 4, 16, 24, 64});
    const std::int64_t B = pick({1, 1, 2, 3, 5});
    c.q_lens.clear();
    c.kv_lens.clear();
    const bool drafts = chance(0.4);
    for (std::int64_t b = 0; b < B; ++b) {
        c.kv_lens.push_back(uniform(1, 300));
        c.q_lens.push_back(drafts ? uniform(1, std::min<std::int64_t>(4, c.kv_lens.back())) : 1);
    }
    c.pass_q_lens = drafts || chance(0.5);
    if (c.layout != "TND" && chance(0.3)) c.Q = c.rows_Q() + uniform(1, 2);
    c.topk3 = c.layout != "TND" && c.rows_Q() == 1 && chance(0.5);
    c.cache_rank4 = chance(0.5);
    c.storage = static_cast<int>(pick({0, 0, 1, 2}));
    c.spare_pages = uniform(0, 3);
    c.spare_cols = uniform(0, 2);
    c.shuffle_pages = chance(0.8);
    c.empty_slot = pick({0, 1, 3}) / 10.0;
    c.duplicate = pick({0, 1, 3}) / 10.0;
    return c;
}

// --- Tensors ---------------------------------------------------------------------------------

namespace {

std::vector<std::int64_t> query_shape(const SelInferCase& c, std::int64_t D) {
    if (c.layout == "BSND") return {c.B(), c.rows_Q(), c.N1, D};
    if (c.layout == "BSH") return {c.B(), c.rows_Q(), c.N1 * D};
    return {c.T(), c.N1, D};
}

std::vector<std::int64_t> cache_shape(const SelInferCase& c, std::int64_t pages, std::int64_t D) {
    if (c.cache_rank4) return {pages, c.P, c.N2, D};
    return {pages, c.P, c.N2 * D};
}

std::vector<std::int64_t> cache_index(const SelInferCase& c, std::int64_t page, std::int64_t r, std::int64_t n2,
                                      std::int64_t e, std::int64_t D) {
    if (c.cache_rank4) return {page, r, n2, e};
    return {page, r, n2 * D + e};
}

std::int64_t first_row(const SelInferCase& c, std::int64_t b) {
    return std::accumulate(c.q_lens.begin(), c.q_lens.begin() + b, std::int64_t{0});
}

std::vector<std::int64_t> token_index(const SelInferCase& c, std::int64_t b, std::int64_t s, std::int64_t h,
                                      std::int64_t e, std::int64_t D) {
    if (c.layout == "BSND") return {b, s, h, e};
    if (c.layout == "BSH") return {b, s, h * D + e};
    return {first_row(c, b) + s, h, e};
}

}  // namespace

SelInferTensors::SelInferTensors(const SelInferCase& cs) : c(cs) {
    std::mt19937_64 rng(c.seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
    const std::int64_t B = c.B();
    params.scale = c.scale != 0.0 ? c.scale : 1.0 / std::sqrt(static_cast<double>(c.Dk));
    params.head_num = c.N1;
    params.key_value_head_num = c.N2;
    params.select_block_size = c.sel;
    params.select_block_count = c.k;
    params.page_block_size = c.P;
    params.layout = c.layout;
    if (c.pass_q_lens) params.actual_q_seq_len = c.q_lens;
    params.actual_kv_seq_len = c.kv_lens;
    const std::vector<std::int64_t> q_lens = c.pass_q_lens ? c.q_lens : std::vector<std::int64_t>(c.kv_lens.size(), 1);

    // Pages: each batch's in order, then spare ones; optionally shuffled.
    std::int64_t used = 0, max_cols = 0;
    for (auto L : c.kv_lens) {
        used += (L + c.P - 1) / c.P;
        max_cols = std::max(max_cols, (L + c.P - 1) / c.P);
    }
    const std::int64_t n_pages = used + c.spare_pages;
    std::vector<std::int32_t> ids(static_cast<std::size_t>(n_pages));
    std::iota(ids.begin(), ids.end(), 0);
    if (c.shuffle_pages) std::shuffle(ids.begin(), ids.end(), rng);
    std::size_t next = 0;
    pages.resize(static_cast<std::size_t>(B));
    for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t j = 0; j < (c.kv_lens[std::size_t(b)] + c.P - 1) / c.P; ++j) pages[std::size_t(b)].push_back(ids[next++]);

    table = HostNd::make(DType::i32, {B, max_cols + c.spare_cols}, 0);
    table.for_each([&](const std::vector<std::int64_t>& idx) {
        const auto& row = pages[static_cast<std::size_t>(idx[0])];
        const bool read = idx[1] < static_cast<std::int64_t>(row.size());
        table.set(idx, read ? row[static_cast<std::size_t>(idx[1])] : (idx[1] % 2 ? -5 : 1 << 29));  // garbage: never read
    });

    // Caches: NaN wherever no batch may read, random in every row below a batch's length.
    k = HostNd::make(c.dtype, cache_shape(c, n_pages, c.Dk), c.storage);
    v = HostNd::make(c.dtype, cache_shape(c, n_pages, c.Dv), c.storage);
    for (HostNd* t : {&k, &v}) t->for_each([&](const std::vector<std::int64_t>& idx) { t->set(idx, NAN); });
    for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t pos = 0; pos < c.kv_lens[std::size_t(b)]; ++pos) {
            const std::int64_t page = pages[std::size_t(b)][std::size_t(pos / c.P)], r = pos % c.P;
            for (std::int64_t n2 = 0; n2 < c.N2; ++n2) {
                for (std::int64_t e = 0; e < c.Dk; ++e) k.set(cache_index(c, page, r, n2, e, c.Dk), normal(rng));
                for (std::int64_t e = 0; e < c.Dv; ++e) v.set(cache_index(c, page, r, n2, e, c.Dv), normal(rng));
            }
        }

    q = HostNd::make(c.dtype, query_shape(c, c.Dk), c.storage);
    q.for_each([&](const std::vector<std::int64_t>& idx) { q.set(idx, NAN); });
    for (std::int64_t b = 0; b < B; ++b)
        for (std::int64_t s = 0; s < q_lens[std::size_t(b)]; ++s)
            for (std::int64_t h = 0; h < c.N1; ++h)
                for (std::int64_t e = 0; e < c.Dk; ++e) q.set(token_index(c, b, s, h, e, c.Dk), normal(rng));

    const bool tnd = c.layout == "TND";
    topk = HostNd::make(DType::i32,
                        tnd ? std::vector<std::int64_t>{c.T(), c.N2, c.k}
                        : c.topk3 ? std::vector<std::int64_t>{B, c.N2, c.k}
                                  : std::vector<std::int64_t>{B, c.rows_Q(), c.N2, c.k},
                        c.storage == 2 ? 2 : 0);
    topk.for_each([&](const std::vector<std::int64_t>& idx) { topk.set(idx, 1 << 30); });  // garbage rows
    for (std::int64_t b = 0; b < B; ++b) {
        const auto blocks = static_cast<std::int32_t>((c.kv_lens[std::size_t(b)] + c.sel - 1) / c.sel);
        for (std::int64_t s = 0; s < q_lens[std::size_t(b)]; ++s)
            for (std::int64_t n2 = 0; n2 < c.N2; ++n2)
                for (std::int64_t j = 0; j < c.k; ++j) {
                    std::int32_t x = std::uniform_int_distribution<std::int32_t>(0, blocks - 1)(rng);
                    if (chance(c.empty_slot)) x = -1;
                    else if (j > 0 && chance(c.duplicate)) x = static_cast<std::int32_t>(topk.get(topk_index(b, s, n2, j - 1)));
                    set_slot(b, s, n2, j, x);
                }
    }
    out = HostNd::make(c.dtype, query_shape(c, c.Dv), c.storage);
}

std::vector<std::int64_t> SelInferTensors::topk_index(std::int64_t b, std::int64_t s, std::int64_t n2,
                                                   std::int64_t j) const {
    if (c.layout == "TND") return {first_row(c, b) + s, n2, j};
    if (c.topk3) return {b, n2, j};
    return {b, s, n2, j};
}

void SelInferTensors::set_slot(std::int64_t b, std::int64_t s, std::int64_t n2, std::int64_t j, std::int32_t x) {
    topk.set(topk_index(b, s, n2, j), x);
}

opennsa::SelectAttentionInferArgs SelInferTensors::args() {
    return {q.view, k.view, v.view, topk.view, table.view, {}, out.view};
}

std::vector<double> SelInferTensors::dense_out() const {
    std::vector<double> d;
    d.reserve(static_cast<std::size_t>(out.numel()));
    const bool tnd = c.layout == "TND";
    const std::int64_t rows = tnd ? c.T() : c.B() * c.rows_Q();
    for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t h = 0; h < c.N1; ++h)
            for (std::int64_t e = 0; e < c.Dv; ++e) {
                if (tnd) d.push_back(out.get({r, h, e}));
                else if (c.layout == "BSND") d.push_back(out.get({r / c.rows_Q(), r % c.rows_Q(), h, e}));
                else d.push_back(out.get({r / c.rows_Q(), r % c.rows_Q(), h * c.Dv + e}));
            }
    return d;
}

std::vector<std::vector<unsigned char>> SelInferTensors::input_bytes() const {
    return {q.bytes, k.bytes, v.bytes, topk.bytes, table.bytes};
}

::testing::AssertionResult run_and_check(SelInferTensors& t) {
    const auto before = t.input_bytes();
    t.out.poison();
    auto args = t.args();
    try {
        opennsa::select_attention_infer(args, t.params);
    } catch (const opennsa::Error& e) {
        return ::testing::AssertionFailure() << "error: " << e.what();
    }
    if (t.input_bytes() != before) return ::testing::AssertionFailure() << "an input was written";
    if (auto w = t.out.fully_written(); !w) return w;
    const sai::Problem p = sai::validate(args, t.params);
    const std::vector<double> ref = sai::reference::forward(p);
    const std::vector<double> got = t.dense_out();
    // Rows s >= Q_b: exactly zero.
    for (std::int64_t b = 0; b < p.B && p.layout != sai::Layout::tnd; ++b)
        for (std::int64_t s = p.q_len[std::size_t(b)]; s < p.Q; ++s)
            for (std::int64_t i = 0; i < p.N1 * p.Dv; ++i)
                if (got[std::size_t((b * p.Q + s) * p.N1 * p.Dv + i)] != 0.0)
                    return ::testing::AssertionFailure() << "row (" << b << ", " << s << ") past Q_b is not zero";
    return close(got, ref, tol_out(t.c.dtype), "output");
}

}  // namespace nsa_test
