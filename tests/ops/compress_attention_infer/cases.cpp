#include "ops/compress_attention_infer/cases.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <sstream>

namespace nsa_test {

// --- Cases -----------------------------------------------------------------------------------

std::int64_t CattnInferCase::max_q() const {
    std::int64_t m = 0;
    for (auto n : q_lens) m = std::max(m, n);
    return m;
}

std::int64_t CattnInferCase::rows() const {
    if (bsnd) return B() * Q();
    return std::accumulate(q_lens.begin(), q_lens.end(), std::int64_t{0});
}

std::int64_t CattnInferCase::max_pages() const {
    std::int64_t m = 0;
    for (std::int64_t b = 0; b < B(); ++b) m = std::max(m, pages_of(b));
    return m;
}

std::string CattnInferCase::describe() const {
    std::ostringstream s;
    s << opennsa::dtype_name(dtype) << (bsnd ? " BSND" : " TND") << " N1=" << N1 << " N2=" << N2 << " Dk=" << Dk
      << " Dv=" << Dv << " l=" << l << " d=" << d << " l'=" << sel << " k=" << k << " P=" << P << " q_lens=[";
    for (auto n : q_lens) s << n << ' ';
    s << "] c_lens=[";
    for (auto n : c_lens) s << n << ' ';
    s << "] raw_lens=[";
    for (auto n : raw_lens) s << n << ' ';
    s << "] pass_q_lens=" << pass_q_lens << " mask=" << mask << " extra_q=" << extra_q << " shuffled=" << shuffled
      << " spare_pages=" << spare_pages << " transposed=" << transposed << " rank4_cache=" << rank4_cache
      << " identical_keys=" << identical_keys << " nan_query_row=" << nan_query_row << " nan_key=" << nan_key
      << " inf_value=" << inf_value << " seed=" << seed;
    return s.str();
}

std::int64_t compressed_tokens(std::int64_t S, std::int64_t l, std::int64_t d) { return S < l ? 0 : (S - l) / d + 1; }

CattnInferCase random_cattn_infer_case(std::mt19937_64& rng, DType dtype) {
    auto pick = [&](std::initializer_list<std::int64_t> xs) {
        return *(xs.begin() + std::uniform_int_distribution<std::size_t>(0, xs.size() - 1)(rng));
    };
    auto uniform = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
    auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
    CattnInferCase c;
    c.dtype = dtype;
    c.seed = rng();
    const std::int64_t G = pick({1, 1, 2, 3, 4, 8, 16});
    c.N2 = G >= 16 ? pick({1, 2}) : pick({1, 2, 3});
    c.N1 = G * c.N2;
    c.Dk = pick({1, 5, 8, 16, 24, 33, 64});
    c.Dv = chance(0.3) ? c.Dk : std::max<std::int64_t>(1, c.Dk - pick({1, 3, 8, 16}));
    c.d = pick({1, 2, 3, 4, 8, 16});
    c.l = c.d * pick({1, 1, 2, 2, 3}) + (chance(0.3) ? uniform(0, c.d - 1) : 0);
    c.sel = c.d * std::max<std::int64_t>(pick({1, 2, 3, 4, 5}), (c.l + c.d - 1) / c.d);
    c.k = pick({1, 2, 3, 4, 6, 9, 16});
    c.P = pick({1, 2, 3, 4, 8, 16, 64});
    c.bsnd = chance(0.4);
    const std::int64_t B = pick({1, 1, 2, 3, 4});
    // Long sequences now and then, so the AVX2 pass splits batches into several key chunks.
    const std::int64_t max_c = chance(0.2) ? 600 : 120;
    c.mask = chance(0.4);
    c.pass_q_lens = c.mask || chance(0.5);
    c.q_lens.clear();
    c.c_lens.clear();
    for (std::int64_t b = 0; b < B; ++b) {
        const std::int64_t Q = c.pass_q_lens && chance(0.6) ? (chance(0.8) ? uniform(1, 4) : uniform(5, 9)) : 1;
        c.q_lens.push_back(Q);
        if (c.mask || chance(0.3)) {  // raw lengths: the draft tokens end the sequence
            const std::int64_t L = std::max(Q, chance(0.1) ? uniform(0, c.l + 2) : uniform(1, max_c * c.d + c.l));
            c.raw_lens.push_back(L);
            const std::int64_t C = compressed_tokens(L, c.l, c.d);
            c.c_lens.push_back(chance(0.85) ? C : uniform(0, C));  // sometimes a cache behind the raw tokens
        } else {
            c.c_lens.push_back(chance(0.1) ? 0 : uniform(1, max_c));
        }
    }
    if (!c.mask && c.raw_lens.size() != c.q_lens.size()) c.raw_lens.clear();  // all or none
    c.extra_q = c.bsnd && chance(0.3) ? uniform(1, 2) : 0;
    c.shuffled = chance(0.8);
    c.spare_pages = uniform(0, 3);
    c.transposed = chance(0.3);
    c.rank4_cache = chance(0.3);
    return c;
}

// --- Tensors ---------------------------------------------------------------------------------

namespace {

// A [rows, N, D] host tensor seen as BSND [B, Q, N, D] (rows = B * Q), or as it is.
TensorView layout_view(const HostTensor& h, const CattnInferCase& c) {
    if (!c.bsnd) return h.view;
    TensorView v = h.view;
    v.rank = 4;
    v.shape[3] = h.view.shape[2];
    v.shape[2] = h.view.shape[1];
    v.shape[1] = c.Q();
    v.shape[0] = c.B();
    v.strides[3] = h.view.strides[2];
    v.strides[2] = h.view.strides[1];
    v.strides[1] = h.view.strides[0];
    v.strides[0] = h.view.strides[0] * c.Q();
    return v;
}

// A cache [numBlocks, P, N2 * D] seen as [numBlocks, P, N2, D] when asked.
TensorView cache_view(const HostTensor& h, const CattnInferCase& c, std::int64_t D) {
    if (!c.rank4_cache) return h.view;
    return TensorView::strided(h.view.data, h.view.dtype, {h.view.shape[0], c.P, c.N2, D},
                               {h.view.strides[0], h.view.strides[1], D, 1});
}

}  // namespace

CattnInferTensors::CattnInferTensors(const CattnInferCase& cs) : c(cs) {
    std::mt19937_64 rng(c.seed);
    params.scale = c.scale != 0.0 ? c.scale : 1.0 / std::sqrt(static_cast<double>(c.Dk));
    params.head_num = c.N1;
    params.key_value_head_num = c.N2;
    params.select_block_size = c.sel;
    params.select_block_count = c.k;
    params.compress_block_size = c.l;
    params.compress_stride = c.d;
    params.page_block_size = c.P;
    params.layout = c.bsnd ? "BSND" : "TND";
    params.sparse_mode = static_cast<std::int64_t>(c.seed % 3);  // ignored
    params.cmp_kv_seq_lens = c.c_lens;
    if (c.pass_q_lens) params.q_seq_lens = c.q_lens;
    if (!c.raw_lens.empty()) params.sel_kv_seq_lens = c.raw_lens;

    const std::int64_t rows = c.rows();
    q = HostTensor::make(c.dtype, rows, c.N1, c.Dk, c.transposed);
    out = HostTensor::make(c.dtype, rows, c.N1, c.Dv, c.transposed);
    topk = HostTensor::make(DType::i32, rows, c.N2, c.k, c.transposed);
    q.fill_normal(rng);
    if (c.nan_query_row >= 0) q.set(c.nan_query_row, 0, c.Dk / 2, std::numeric_limits<double>::quiet_NaN());
    qv = layout_view(q, c);
    outv = layout_view(out, c);
    topkv = layout_view(topk, c);

    // Pages: every batch's in a shuffled (or ordered) pool, spare pages unused.
    std::int64_t pages = c.spare_pages;
    for (std::int64_t b = 0; b < c.B(); ++b) pages += c.pages_of(b);
    std::vector<std::int32_t> pool(static_cast<std::size_t>(pages));
    std::iota(pool.begin(), pool.end(), 0);
    if (c.shuffled) std::shuffle(pool.begin(), pool.end(), rng);
    const std::int64_t cols = c.max_pages() + static_cast<std::int64_t>(c.seed % 2);
    table.assign(static_cast<std::size_t>(c.B() * cols), 0);
    for (std::size_t x = 0; x < table.size(); ++x)  // entries no batch reads: out of range
        table[x] = x % 2 ? static_cast<std::int32_t>(pages + 1000 + static_cast<std::int64_t>(x)) : -7;
    std::size_t next = 0;
    for (std::int64_t b = 0; b < c.B(); ++b)
        for (std::int64_t j = 0; j < c.pages_of(b); ++j) table[static_cast<std::size_t>(b * cols + j)] = pool[next++];
    tablev = TensorView::contiguous(table.data(), DType::i32, {c.B(), cols});

    // The caches: NaN everywhere a batch does not read (a stray read shows), normal values in
    // every row a batch holds.
    key = HostTensor::make(c.dtype, pages, c.P, c.N2 * c.Dk, false);
    value = HostTensor::make(c.dtype, pages, c.P, c.N2 * c.Dv, false);
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (HostTensor* t : {&key, &value})
        for (std::int64_t x = 0; x < t->view.shape[0]; ++x)
            for (std::int64_t r = 0; r < c.P; ++r)
                for (std::int64_t e = 0; e < t->view.shape[2]; ++e) t->set(x, r, e, nan);
    std::normal_distribution<double> normal(0.0, 1.0);
    for (std::int64_t b = 0; b < c.B(); ++b)
        for (std::int64_t j = 0; j < c.c_lens[static_cast<std::size_t>(b)]; ++j) {
            const std::int64_t row = cache_row(b, j), page = row / c.P, r = row % c.P;
            for (std::int64_t e = 0; e < c.N2 * c.Dk; ++e)
                key.set(page, r, e, c.identical_keys && j > 0 ? key.get(cache_row(b, 0) / c.P, cache_row(b, 0) % c.P, e)
                                                             : normal(rng));
            for (std::int64_t e = 0; e < c.N2 * c.Dv; ++e) value.set(page, r, e, normal(rng));
        }
    if (c.nan_key >= 0) key.set(cache_row(0, c.nan_key) / c.P, cache_row(0, c.nan_key) % c.P, c.Dk - 1, nan);
    if (c.inf_value >= 0)
        value.set(cache_row(0, c.inf_value) / c.P, cache_row(0, c.inf_value) % c.P, 0,
                  std::numeric_limits<double>::infinity());
    keyv = cache_view(key, c, c.Dk);
    valuev = cache_view(value, c, c.Dv);
    if (c.mask) {  // any contents: never read
        mask_bytes.assign(15, 0xAB);
        maskv = TensorView::contiguous(mask_bytes.data(), c.seed % 2 ? DType::boolean : DType::u8, {3, 5});
    }
    poison_outputs();
}

std::int64_t CattnInferTensors::cache_row(std::int64_t b, std::int64_t j) const {
    const std::int64_t cols = tablev.shape[1];
    return static_cast<std::int64_t>(table[static_cast<std::size_t>(b * cols + j / c.P)]) * c.P + j % c.P;
}

opennsa::CompressAttentionInferArgs CattnInferTensors::args() const {
    return {.query = qv, .key = keyv, .value = valuev, .atten_mask = maskv, .block_table = tablev,
            .topk_mask = {}, .out = outv, .topk = topkv};
}

cai::Problem CattnInferTensors::problem() const { return cai::validate(args(), params); }

void CattnInferTensors::poison_outputs() {
    out.poison();
    std::fill(topk.bytes.begin(), topk.bytes.end(), kTopkPoison);
}

::testing::AssertionResult CattnInferTensors::topk_fully_written() const {
    std::vector<char> inside(topk.bytes.size(), 0);
    for (std::int64_t i = 0; i < topk.view.shape[0]; ++i)
        for (std::int64_t j = 0; j < topk.view.shape[1]; ++j)
            for (std::int64_t s = 0; s < topk.view.shape[2]; ++s) {
                const std::size_t off = topk.offset_bytes(i, j, s);
                std::int32_t v = 0;
                std::memcpy(&v, topk.bytes.data() + off, 4);
                std::fill(inside.begin() + static_cast<std::ptrdiff_t>(off), inside.begin() + static_cast<std::ptrdiff_t>(off + 4), 1);
                if (v == static_cast<std::int32_t>(0xA5A5A5A5u))
                    return ::testing::AssertionFailure() << "topk element [" << i << ", " << j << ", " << s << "] was not written";
            }
    for (std::size_t x = 0; x < topk.bytes.size(); ++x)
        if (!inside[x] && topk.bytes[x] != kTopkPoison)
            return ::testing::AssertionFailure() << "topk byte " << x << " outside the view was written";
    return ::testing::AssertionSuccess();
}

// --- Checks ----------------------------------------------------------------------------------

::testing::AssertionResult out_ok(const CattnInferTensors& t, const cai::reference::Result& ref) {
    const std::vector<double> got = t.out.dense();
    std::vector<double> g, r;
    for (std::size_t x = 0; x < got.size(); ++x) {
        const bool same_special = std::isnan(ref.out[x]) ? std::isnan(got[x]) : got[x] == ref.out[x];
        if ((!std::isfinite(ref.out[x]) || !std::isfinite(got[x])) && !same_special)
            return ::testing::AssertionFailure() << "output[" << x << "]: got " << got[x] << ", reference " << ref.out[x]
                                                 << " (NaN / inf patterns differ)";
        if (std::isfinite(ref.out[x])) {
            g.push_back(got[x]);
            r.push_back(ref.out[x]);
        }
    }
    return close(g, r, tol_out(t.c.dtype), "output");
}

::testing::AssertionResult topk_ok(const CattnInferTensors& t, const cai::reference::Result& ref, bool exact) {
    const cai::Problem p = t.problem();
    const std::int64_t K = t.c.k;
    std::vector<char> computed(static_cast<std::size_t>(p.rows), 0);
    for (std::int64_t b = 0; b < p.B; ++b)
        for (std::int64_t s = 0; s < p.q_len[static_cast<std::size_t>(b)]; ++s)
            computed[static_cast<std::size_t>(cai::reference::flat_row(p, b, s))] = 1;
    for (std::int64_t row = 0; row < p.rows; ++row)
        for (std::int64_t n2 = 0; n2 < t.c.N2; ++n2)
            if (!computed[static_cast<std::size_t>(row)])
                for (std::int64_t s = 0; s < K; ++s)
                    if (t.topk.get(row, n2, s) != -1)
                        return ::testing::AssertionFailure() << "row " << row << " is not computed but topk[" << s << "] = "
                                                             << t.topk.get(row, n2, s);
    for (std::int64_t b = 0; b < p.B; ++b) {
        const std::int64_t ns = ref.ns[static_cast<std::size_t>(b)], kept = std::min(ns, K);
        for (std::int64_t s = 0; s < p.q_len[static_cast<std::size_t>(b)]; ++s)
            for (std::int64_t n2 = 0; n2 < t.c.N2; ++n2) {
                const std::int64_t row = cai::reference::flat_row(p, b, s);
                const std::size_t base = static_cast<std::size_t>((row * t.c.N2 + n2) * ref.max_ns);
                const auto score = [&](std::int32_t J) { return ref.score[base + static_cast<std::size_t>(J)]; };
                const auto forced = [&](std::int32_t J) { return J == 0 || J == ns - 2 || J == ns - 1; };
                std::vector<std::int32_t> got(static_cast<std::size_t>(K)), want(got);
                for (std::int64_t x = 0; x < K; ++x) {
                    got[static_cast<std::size_t>(x)] = static_cast<std::int32_t>(t.topk.get(row, n2, x));
                    want[static_cast<std::size_t>(x)] = ref.topk[static_cast<std::size_t>((row * t.c.N2 + n2) * K + x)];
                }
                std::ostringstream where;
                where << "topk of batch " << b << " token " << s << " (NS_b = " << ns << ") kv head " << n2 << ": [";
                for (auto x : got) where << x << ' ';
                where << "], reference [";
                for (auto x : want) where << x << ' ';
                where << "]";
                const auto fail = [&](const char* why) { return ::testing::AssertionFailure() << where.str() << ": " << why; };
                if (exact) {
                    if (got != want) return fail("differs from the reference");
                    continue;
                }
                std::vector<char> seen(static_cast<std::size_t>(ns), 0);
                for (std::int64_t x = 0; x < K; ++x) {
                    const std::int32_t J = got[static_cast<std::size_t>(x)];
                    if (x >= kept) {
                        if (J != -1) return fail("a slot past NS_b is not -1");
                        continue;
                    }
                    if (J < 0 || J >= ns) return fail("an index is not a block of the batch");
                    if (seen[static_cast<std::size_t>(J)]++) return fail("an index repeats");
                }
                // The reference's classes: forced, NaN (ascending index), then numbers.
                std::vector<std::int32_t> first;
                std::vector<double> numbers;
                for (std::int32_t J = 0; J < ns; ++J)
                    if (forced(J)) first.push_back(J);
                for (std::int32_t J = 0; J < ns; ++J)
                    if (!forced(J) && std::isnan(score(J))) first.push_back(J);
                for (std::int32_t J = 0; J < ns; ++J)
                    if (!forced(J) && !std::isnan(score(J))) numbers.push_back(score(J));
                std::sort(numbers.rbegin(), numbers.rend());
                std::int64_t x = 0;
                for (; x < kept && x < static_cast<std::int64_t>(first.size()); ++x)
                    if (got[static_cast<std::size_t>(x)] != first[static_cast<std::size_t>(x)])
                        return fail("the forced blocks (then NaN scores) are not first, in ascending order");
                if (x == kept) continue;
                const double kth = numbers[static_cast<std::size_t>(kept - x - 1)];
                const double tol = 1e-5 * std::max(1.0, kth);
                for (std::int64_t y = x; y < kept; ++y) {
                    const std::int32_t J = got[static_cast<std::size_t>(y)];
                    if (forced(J) || std::isnan(score(J))) return fail("a forced or NaN block sits among the numbers");
                    if (!(score(J) >= kth - tol)) return fail("an index's reference score is below the k-th score");
                    if (y > x && score(J) > score(got[static_cast<std::size_t>(y - 1)]) + tol)
                        return fail("scores that differ by more than the tolerance are not in descending order");
                }
            }
    }
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult outputs_ok(const CattnInferTensors& t, const cai::reference::Result& ref) {
    if (auto r = t.out.fully_written(); !r) return r << " (output)";
    if (auto r = t.topk_fully_written(); !r) return r;
    if (auto r = out_ok(t, ref); !r) return r;
    return topk_ok(t, ref, false);
}

}  // namespace nsa_test
