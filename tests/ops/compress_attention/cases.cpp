#include "ops/compress_attention/cases.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <sstream>

namespace nsa_test {

// --- Cases -----------------------------------------------------------------------------------

std::int64_t CompressCase::T1() const {
    std::int64_t s = pad_q;
    for (auto n : q_lens) s += n;
    return s;
}

std::int64_t CompressCase::T2() const {
    std::int64_t s = pad_kv;
    for (auto n : c_lens) s += n;
    return s;
}

std::int64_t CompressCase::max_q() const {
    std::int64_t m = 0;
    for (auto n : q_lens) m = std::max(m, n);
    return varlen ? m : T1();
}

std::int64_t CompressCase::max_c() const {
    std::int64_t m = 0;
    for (auto n : c_lens) m = std::max(m, n);
    return varlen ? m : T2();
}

std::int64_t CompressCase::max_ns() const {
    const std::int64_t m = sel / d;
    return (max_c() + m - 1) / m;
}

std::string CompressCase::describe() const {
    std::ostringstream s;
    s << opennsa::dtype_name(dtype) << " N1=" << N1 << " N2=" << N2 << " Dk=" << Dk << " Dv=" << Dv << " l=" << l
      << " d=" << d << " l'=" << sel << " k=" << k << " q_lens=[";
    for (auto n : q_lens) s << n << ' ';
    s << "] c_lens=[";
    for (auto n : c_lens) s << n << ' ';
    s << "] pad_q=" << pad_q << " pad_kv=" << pad_kv << " varlen=" << varlen << " sparse_mode=" << sparse_mode
      << " atten_mask=" << atten_mask << " nsa_causal_mask=" << nsa_causal_mask << " forced=" << forced
      << " transposed=" << transposed << " mask_layout=" << mask_layout << " token_major=" << token_major
      << " identical_keys=" << identical_keys << " nan_query_row=" << nan_query_row << " nan_key_row=" << nan_key_row << " inf_value_row=" << inf_value_row
      << " seed=" << seed;
    return s.str();
}

std::int64_t compressed_count(std::int64_t S, std::int64_t l, std::int64_t d) { return S < l ? 0 : (S - l) / d + 1; }

CompressCase random_compress_case(std::mt19937_64& rng, DType dtype) {
    auto pick = [&](std::initializer_list<std::int64_t> xs) {
        return *(xs.begin() + std::uniform_int_distribution<std::size_t>(0, xs.size() - 1)(rng));
    };
    auto uniform = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
    auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
    CompressCase c;
    c.dtype = dtype;
    c.seed = rng();
    const std::int64_t G = pick({1, 1, 2, 3, 4, 5, 8, 16, 32});
    c.N2 = G >= 16 ? 1 : pick({1, 2, 3});
    c.N1 = G * c.N2;
    c.Dk = pick({1, 5, 8, 16, 24, 33, 64, 72});
    c.Dv = chance(0.3) ? c.Dk : std::max<std::int64_t>(1, c.Dk - pick({1, 3, 8, 16}));
    // l, d, l' with d <= l <= l', l' % d == 0; many not multiples of 16.
    c.d = pick({1, 2, 3, 4, 5, 8, 16});
    c.l = c.d * pick({1, 1, 2, 2, 3}) + (chance(0.3) ? uniform(0, c.d - 1) : 0);
    c.sel = c.d * std::max<std::int64_t>(pick({1, 2, 3, 4, 5}), (c.l + c.d - 1) / c.d);
    c.k = pick({1, 2, 3, 4, 6, 9, 16});
    const std::int64_t B = pick({1, 1, 2, 3, 4});
    c.varlen = B > 1 || chance(0.3);
    // Self-attention batches: S1_b raw tokens, C_b = C(S1_b) (or an unrelated count sometimes).
    const std::int64_t max_len = G >= 16 ? 48 : 110;
    c.q_lens.clear();
    c.c_lens.clear();
    for (std::int64_t b = 0; b < B; ++b) {
        const std::int64_t S = chance(0.1) ? 0 : (chance(0.15) ? uniform(0, c.l - 1) : uniform(1, max_len));
        c.q_lens.push_back(S);
        c.c_lens.push_back(chance(0.8) ? compressed_count(S, c.l, c.d) : uniform(0, max_len / 2));
    }
    if (c.varlen) {
        c.pad_q = chance(0.4) ? uniform(1, 5) : 0;
        c.pad_kv = chance(0.4) ? uniform(1, 5) : 0;
    }
    c.sparse_mode = pick({0, 1, 1, 2, 2});
    c.atten_mask = chance(c.sparse_mode == 2 ? 0.3 : 0.6);
    c.nsa_causal_mask = chance(0.4);
    c.mask_density = pick({1, 3, 9}) / 10.0;
    c.forced = chance(0.5) ? pick({1, 3}) / 10.0 : 0.0;
    c.transposed = chance(0.3);
    c.mask_layout = static_cast<int>(uniform(0, 2));
    c.token_major = chance(0.3);
    return c;
}

// --- Masks -----------------------------------------------------------------------------------

HostMask HostMask::make(DType dtype, std::int64_t R, std::int64_t C, int layout) {
    HostMask m;
    const std::int64_t row = C + 3;
    m.bytes.assign(static_cast<std::size_t>(std::max(R * row, (R + 1) * (C + 1)) + 64), 0);
    if (layout == 0)
        m.view = TensorView::strided(m.bytes.data(), dtype, {R, C}, {row, 1});
    else if (layout == 1)
        m.view = TensorView::strided(m.bytes.data(), dtype, {R, C}, {1, R + 1});
    else
        m.view = TensorView::contiguous(m.bytes.data(), dtype, {R, C});
    // Bytes outside the view are 0xAB (nonzero): a read outside it would mask or force.
    std::fill(m.bytes.begin(), m.bytes.end(), 0xAB);
    for (std::int64_t i = 0; i < R; ++i)
        for (std::int64_t j = 0; j < C; ++j) m.set(i, j, 0);
    return m;
}

void HostMask::set(std::int64_t i, std::int64_t j, unsigned char v) {
    bytes[static_cast<std::size_t>(i * view.strides[0] + j * view.strides[1])] = v;
}

unsigned char HostMask::get(std::int64_t i, std::int64_t j) const {
    return bytes[static_cast<std::size_t>(i * view.strides[0] + j * view.strides[1])];
}

// --- Tensors ---------------------------------------------------------------------------------

CompressTensors::CompressTensors(const CompressCase& cs) : c(cs) {
    std::mt19937_64 rng(c.seed);
    std::uniform_real_distribution<double> u01(0, 1);
    const std::int64_t T1 = c.T1(), T2 = c.T2();
    params.scale = c.scale != 0.0 ? c.scale : 1.0 / std::sqrt(static_cast<double>(c.Dk));
    params.head_num = c.N1;
    params.compress_block_size = c.l;
    params.compress_stride = c.d;
    params.select_block_size = c.sel;
    params.select_block_count = c.k;
    params.sparse_mode = c.sparse_mode;
    params.stats_token_major = c.token_major;
    if (c.varlen) {
        std::vector<std::int64_t> cq, ckv, csel;
        std::int64_t sq = 0, skv = 0, ssel = 0;
        for (std::size_t b = 0; b < c.q_lens.size(); ++b) {
            cq.push_back(sq += c.q_lens[b]);
            ckv.push_back(skv += c.c_lens[b]);
            csel.push_back(ssel += 1000 + static_cast<std::int64_t>(b));  // never read
        }
        params.cu_seqlens_q = cq;
        params.cu_seqlens_cmp_kv = ckv;
        params.cu_seqlens_sel_kv = csel;
    }
    q = HostTensor::make(c.dtype, T1, c.N1, c.Dk, c.transposed);
    k = HostTensor::make(c.dtype, T2, c.N2, c.Dk, c.transposed);
    v = HostTensor::make(c.dtype, T2, c.N2, c.Dv, c.transposed);
    dO = HostTensor::make(c.dtype, T1, c.N1, c.Dv, c.transposed);
    out = HostTensor::make(c.dtype, T1, c.N1, c.Dv, c.transposed);
    dq = HostTensor::make(c.dtype, T1, c.N1, c.Dk, c.transposed);
    dk = HostTensor::make(c.dtype, T2, c.N2, c.Dk, c.transposed);
    dv = HostTensor::make(c.dtype, T2, c.N2, c.Dv, c.transposed);
    smax = HostTensor::make(DType::f32, T1, c.N1, 8, c.transposed);
    ssum = HostTensor::make(DType::f32, T1, c.N1, 8, c.transposed);
    topk = HostTensor::make(DType::i32, T1, c.N2, c.k, c.transposed);
    q.fill_normal(rng);
    k.fill_normal(rng);
    v.fill_normal(rng);
    dO.fill_normal(rng);
    if (c.identical_keys) {  // every key of a (batch, kv head) equals the batch's first
        std::int64_t k0 = 0;
        for (std::int64_t len : c.c_lens) {
            for (std::int64_t j = 1; j < len; ++j)
                for (std::int64_t n = 0; n < c.N2; ++n)
                    for (std::int64_t e = 0; e < c.Dk; ++e) k.set(k0 + j, n, e, k.get(k0, n, e));
            k0 += len;
        }
    }
    if (c.nan_query_row >= 0) q.set(c.nan_query_row, 0, c.Dk / 2, std::numeric_limits<double>::quiet_NaN());
    if (c.nan_key_row >= 0) k.set(c.nan_key_row, 0, c.Dk - 1, std::numeric_limits<double>::quiet_NaN());
    if (c.inf_value_row >= 0) v.set(c.inf_value_row, 0, 0, std::numeric_limits<double>::infinity());

    // Masks cover [maxS1, maxC] (resp. [maxS1, maxNS]), sometimes with a row or column more.
    const DType mask_dtype = (c.seed & 1) ? DType::boolean : DType::u8;
    if (c.atten_mask) {
        const std::int64_t R = c.max_q() + static_cast<std::int64_t>(c.seed % 2), C = c.max_c() + static_cast<std::int64_t>((c.seed >> 1) % 2);
        mask = HostMask::make(mask_dtype, R, C, c.mask_layout);
        for (std::int64_t i = 0; i < R; ++i)
            for (std::int64_t j = 0; j < C; ++j) {
                const bool set = c.nsa_causal_mask ? j * c.d + c.l - 1 > i : u01(rng) < c.mask_density;
                mask.set(i, j, set ? static_cast<unsigned char>(mask_dtype == DType::boolean ? 1 : 1 + (rng() % 255)) : 0);
            }
    }
    if (c.forced > 0) {
        const std::int64_t R = c.max_q() + static_cast<std::int64_t>((c.seed >> 2) % 2), C = c.max_ns() + static_cast<std::int64_t>((c.seed >> 3) % 2);
        topk_mask = HostMask::make(mask_dtype, R, C, (c.mask_layout + 1) % 3);
        for (std::int64_t i = 0; i < R; ++i)
            for (std::int64_t j = 0; j < C; ++j) topk_mask.set(i, j, u01(rng) < c.forced ? 1 : 0);
    }
    poison_outputs();
}

void CompressTensors::poison_outputs() {
    for (HostTensor* t : {&out, &smax, &ssum, &dq, &dk, &dv}) t->poison();
    std::fill(topk.bytes.begin(), topk.bytes.end(), kTopkPoison);
}

::testing::AssertionResult CompressTensors::topk_fully_written() const {
    std::vector<char> inside(topk.bytes.size(), 0);
    for (std::int64_t i = 0; i < topk.view.shape[0]; ++i)
        for (std::int64_t j = 0; j < topk.view.shape[1]; ++j)
            for (std::int64_t s = 0; s < topk.view.shape[2]; ++s) {
                const std::size_t off = topk.offset_bytes(i, j, s);
                bool poisoned = true;
                for (std::size_t x = 0; x < 4; ++x) {
                    poisoned = poisoned && topk.bytes[off + x] == kTopkPoison;
                    inside[off + x] = 1;
                }
                if (poisoned)
                    return ::testing::AssertionFailure() << "topk element [" << i << ", " << j << ", " << s << "] was not written";
            }
    for (std::size_t x = 0; x < topk.bytes.size(); ++x)
        if (!inside[x] && topk.bytes[x] != kTopkPoison)
            return ::testing::AssertionFailure() << "topk byte " << x << " outside the view was written";
    return ::testing::AssertionSuccess();
}

opennsa::CompressAttentionArgs CompressTensors::forward_args() const {
    return {.query = q.view, .key = k.view, .value = v.view, .atten_mask = c.atten_mask ? mask.view : TensorView{},
            .topk_mask = c.forced > 0 ? topk_mask.view : TensorView{}, .out = out.view, .topk = topk.view,
            .softmax_max = smax.view, .softmax_sum = ssum.view};
}

opennsa::CompressAttentionGradArgs CompressTensors::backward_args() const {
    return {.query = q.view, .key = k.view, .value = v.view, .out = out.view, .out_grad = dO.view,
            .softmax_max = smax.view, .softmax_sum = ssum.view, .atten_mask = c.atten_mask ? mask.view : TensorView{},
            .query_grad = dq.view, .key_grad = dk.view, .value_grad = dv.view};
}

ca::Problem CompressTensors::forward_problem() const { return ca::validate_forward(forward_args(), params); }
ca::Problem CompressTensors::backward_problem() const { return ca::validate_backward(backward_args(), params); }

void CompressTensors::set_forward_from_reference() {
    const ca::Problem p = forward_problem();
    const auto ref = ca::reference::forward(p);
    for (std::int64_t t = 0; t < c.T1(); ++t)
        for (std::int64_t h = 0; h < c.N1; ++h)
            for (std::int64_t e = 0; e < c.Dv; ++e) out.set(t, h, e, ref.out[static_cast<std::size_t>((t * c.N1 + h) * c.Dv + e)]);
    for (std::int64_t t = 0; t < c.T1(); ++t)
        for (std::int64_t h = 0; h < c.N1; ++h)
            for (int e = 0; e < 8; ++e) {
                smax.set(t, h, e, 0.0);
                ssum.set(t, h, e, 0.0);
            }
    for (std::int64_t b = 0; b < p.batches.count(); ++b)
        for (std::int64_t i = 0; i < p.batches.query_count(b); ++i)
            for (std::int64_t h = 0; h < c.N1; ++h) {
                const std::size_t row = static_cast<std::size_t>((p.batches.q[b] + i) * c.N1 + h);
                const auto stat_at = p.stat_index(b, h, i);
                const std::int64_t st = stat_at.first, sh = stat_at.second;  // (clang 14: lambdas cannot capture bindings)
                for (int e = 0; e < 8; ++e) {
                    smax.set(st, sh, e, ref.max[row]);
                    ssum.set(st, sh, e, ref.sum[row]);
                }
            }
}

// --- Checks ----------------------------------------------------------------------------------

::testing::AssertionResult close_with_nan(const std::vector<double>& got, const std::vector<double>& ref, double tol,
                                          const char* what) {
    if (got.size() != ref.size()) return ::testing::AssertionFailure() << what << ": size differs";
    std::vector<double> g, r;
    for (std::size_t x = 0; x < got.size(); ++x) {
        const bool same_special = std::isnan(ref[x]) ? std::isnan(got[x]) : got[x] == ref[x];
        if ((!std::isfinite(ref[x]) || !std::isfinite(got[x])) && !same_special)
            return ::testing::AssertionFailure() << what << "[" << x << "]: got " << got[x] << ", reference " << ref[x]
                                                 << " (NaN / inf patterns differ)";
        if (std::isfinite(ref[x])) {
            g.push_back(got[x]);
            r.push_back(ref[x]);
        }
    }
    return close(g, r, tol, what);
}

::testing::AssertionResult close_gradient(const std::vector<double>& got, const std::vector<double>& ref,
                                          const std::vector<double>& magnitude, double tol, const char* what) {
    ::testing::AssertionResult plain = close_with_nan(got, ref, tol, what);
    if (plain) return plain;
    double err2 = 0, mag2 = 0, max_err = 0, max_mag = 0;
    for (std::size_t x = 0; x < got.size(); ++x) {
        if (!std::isfinite(ref[x]) || !std::isfinite(magnitude[x])) {
            const bool same = std::isnan(ref[x]) ? std::isnan(got[x]) : got[x] == ref[x];
            if (!same) return plain;
            continue;
        }
        const double e = std::abs(got[x] - ref[x]);
        if (!(e <= 1e300)) return plain;  // NaN where the reference is finite
        err2 += e * e;
        mag2 += magnitude[x] * magnitude[x];
        max_err = std::max(max_err, e);
        max_mag = std::max(max_mag, magnitude[x]);
    }
    if (std::sqrt(err2) <= tol * std::sqrt(mag2) && max_err <= 4 * tol * max_mag) return ::testing::AssertionSuccess();
    return plain << "; against the terms' magnitudes too: error " << std::sqrt(err2) << " vs " << tol * std::sqrt(mag2);
}

::testing::AssertionResult stats_ok(const CompressTensors& t, const ca::reference::ForwardResult& ref) {
    const ca::Problem p = t.forward_problem();
    auto copies_equal = [&](std::int64_t r, std::int64_t h) {
        for (int e = 1; e < 8; ++e)
            if (std::memcmp(t.smax.bytes.data() + t.smax.offset_bytes(r, h, e), t.smax.bytes.data() + t.smax.offset_bytes(r, h, 0), 4) != 0 ||
                std::memcmp(t.ssum.bytes.data() + t.ssum.offset_bytes(r, h, e), t.ssum.bytes.data() + t.ssum.offset_bytes(r, h, 0), 4) != 0)
                return false;
        return true;
    };
    for (std::int64_t r = 0; r < t.c.T1(); ++r)
        for (std::int64_t h = 0; h < t.c.N1; ++h)
            if (!copies_equal(r, h)) return ::testing::AssertionFailure() << "softmax row [" << r << ", " << h << "]: copies differ";
    for (std::int64_t r = p.batches.valid_queries(); r < t.c.T1(); ++r)
        for (std::int64_t h = 0; h < t.c.N1; ++h)
            if (t.smax.get(r, h, 0) != 0.0 || t.ssum.get(r, h, 0) != 0.0)
                return ::testing::AssertionFailure() << "padding statistics row [" << r << ", " << h << "] is not 0";
    for (std::int64_t b = 0; b < p.batches.count(); ++b)
        for (std::int64_t i = 0; i < p.batches.query_count(b); ++i)
            for (std::int64_t h = 0; h < t.c.N1; ++h) {
                const std::size_t row = static_cast<std::size_t>((p.batches.q[b] + i) * t.c.N1 + h);
                const auto stat_at = p.stat_index(b, h, i);
                const std::int64_t st = stat_at.first, sh = stat_at.second;  // (clang 14: lambdas cannot capture bindings)
                const double m = t.smax.get(st, sh, 0), s = t.ssum.get(st, sh, 0);
                const auto where = [&] {
                    std::ostringstream o;
                    o << "batch " << b << " position " << i << " head " << h << " (stored at [" << st << ", " << sh << "])";
                    return o.str();
                };
                if (std::isnan(ref.sum[row]) || std::isnan(ref.max[row])) {
                    if (!std::isnan(m) || !std::isnan(s))
                        return ::testing::AssertionFailure() << where() << ": reference is NaN, got max " << m << " sum " << s;
                    continue;
                }
                if (ref.sum[row] == 0.0) {
                    if (m != 0.0 || s != 0.0)
                        return ::testing::AssertionFailure() << where() << " sees nothing but max = " << m << ", sum = " << s;
                    continue;
                }
                const double lse = std::log(s) + m, want = std::log(ref.sum[row]) + ref.max[row];
                if (!(std::abs(lse - want) <= 1e-3))
                    return ::testing::AssertionFailure() << where() << ": log-sum-exp " << lse << " vs reference " << want;
            }
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult topk_ok(const CompressTensors& t, const ca::reference::ForwardResult& ref, bool exact) {
    const ca::Problem p = t.forward_problem();
    const std::int64_t K = t.c.k;
    auto got_at = [&](std::int64_t tok, std::int64_t n2, std::int64_t s) {
        return static_cast<std::int32_t>(t.topk.get(tok, n2, s));
    };
    for (std::int64_t tok = p.batches.valid_queries(); tok < t.c.T1(); ++tok)
        for (std::int64_t n2 = 0; n2 < t.c.N2; ++n2)
            for (std::int64_t s = 0; s < K; ++s)
                if (got_at(tok, n2, s) != -1)
                    return ::testing::AssertionFailure() << "padding row " << tok << ": topk[" << s << "] = " << got_at(tok, n2, s);
    for (std::int64_t b = 0; b < p.batches.count(); ++b) {
        const std::int64_t ns = p.block_count(b), kept = std::min(ns, K);
        for (std::int64_t tok = p.batches.q[b]; tok < p.batches.q[b + 1]; ++tok)
            for (std::int64_t n2 = 0; n2 < t.c.N2; ++n2) {
                const std::size_t base = static_cast<std::size_t>((tok * t.c.N2 + n2) * p.max_ns);
                auto score = [&](std::int32_t J) { return ref.score[base + static_cast<std::size_t>(J)]; };
                auto forced = [&](std::int32_t J) { return ref.forced[base + static_cast<std::size_t>(J)] != 0; };
                auto kind = [&](std::int32_t J) { return forced(J) ? 0 : (std::isnan(score(J)) ? 1 : 2); };
                std::vector<std::int32_t> got(static_cast<std::size_t>(K));
                for (std::int64_t s = 0; s < K; ++s) got[static_cast<std::size_t>(s)] = got_at(tok, n2, s);
                std::ostringstream where;
                where << "topk of token " << tok << " (batch " << b << ", NS_b = " << ns << ") kv head " << n2 << ": [";
                for (auto x : got) where << x << ' ';
                where << "], reference [";
                for (std::int64_t s = 0; s < K; ++s) where << ref.topk[static_cast<std::size_t>((tok * t.c.N2 + n2) * K + s)] << ' ';
                where << "]";
                auto fail = [&](const char* why) { return ::testing::AssertionFailure() << where.str() << ": " << why; };
                if (exact) {
                    for (std::int64_t s = 0; s < K; ++s)
                        if (got[static_cast<std::size_t>(s)] != ref.topk[static_cast<std::size_t>((tok * t.c.N2 + n2) * K + s)])
                            return fail("differs from the reference");
                    continue;
                }
                std::vector<char> seen(static_cast<std::size_t>(ns), 0);
                for (std::int64_t s = 0; s < K; ++s) {
                    const std::int32_t J = got[static_cast<std::size_t>(s)];
                    if (s >= kept) {
                        if (J != -1) return fail("a slot past NS_b is not -1");
                        continue;
                    }
                    if (J < 0 || J >= ns) return fail("an index is not a block of the batch");
                    if (seen[static_cast<std::size_t>(J)]++) return fail("an index repeats");
                }
                // The reference's classes: forced, NaN, numbers (ascending index in the first two).
                std::vector<std::int32_t> by_kind[3];
                for (std::int32_t J = 0; J < ns; ++J) by_kind[kind(J)].push_back(J);
                std::vector<double> numbers;
                for (std::int32_t J : by_kind[2]) numbers.push_back(score(J));
                std::sort(numbers.rbegin(), numbers.rend());
                std::int64_t s = 0;
                for (int kd = 0; kd < 2; ++kd)
                    for (std::size_t x = 0; x < by_kind[kd].size() && s < kept; ++x, ++s)
                        if (got[static_cast<std::size_t>(s)] != by_kind[kd][x])
                            return fail(kd == 0 ? "the forced blocks are not first, lowest ones in ascending order"
                                                : "the NaN-score blocks are not next, in ascending order");
                const std::int64_t rest = kept - s;
                if (rest == 0) continue;
                const double kth = numbers[static_cast<std::size_t>(rest - 1)];
                const double tol = 1e-5 * std::max(1.0, kth);
                std::int32_t last_zero = -1;
                for (std::int64_t x = s; x < kept; ++x) {
                    const std::int32_t J = got[static_cast<std::size_t>(x)];
                    if (kind(J) != 2) return fail("a forced or NaN block sits among the numbers");
                    if (!(score(J) >= kth - tol)) return fail("an index's reference score is below the k-th score");
                    if (x > s && score(J) > score(got[static_cast<std::size_t>(x - 1)]) + tol)
                        return fail("scores that differ by more than the tolerance are not in descending order");
                    if (score(J) == 0.0) {
                        if (J < last_zero) return fail("blocks of zero score are not in ascending index order");
                        last_zero = J;
                    }
                }
            }
    }
    return ::testing::AssertionSuccess();
}

}  // namespace nsa_test
