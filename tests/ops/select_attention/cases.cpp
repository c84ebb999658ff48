#include "ops/select_attention/cases.hpp"

#include <algorithm>
#include <sstream>

namespace nsa_test {

// --- Cases -----------------------------------------------------------------------------------

std::int64_t Case::T1() const {
    std::int64_t s = pad_q;
    for (auto n : q_lens) s += n;
    return s;
}

std::int64_t Case::T2() const {
    std::int64_t s = pad_kv;
    for (auto n : kv_lens) s += n;
    return s;
}

std::string Case::describe() const {
    std::ostringstream s;
    s << opennsa::dtype_name(dtype) << " N1=" << N1 << " N2=" << N2 << " Dk=" << Dk << " Dv=" << Dv << " bs=" << bs
      << " C=" << C << " q_lens=[";
    for (auto n : q_lens) s << n << ' ';
    s << "] kv_lens=[";
    for (auto n : kv_lens) s << n << ' ';
    s << "] pad_q=" << pad_q << " pad_kv=" << pad_kv << " varlen=" << varlen << " causal=" << causal
      << " transposed=" << transposed << " seed=" << seed;
    return s.str();
}

Case random_case(std::mt19937_64& rng, DType dtype) {
    auto pick = [&](std::initializer_list<std::int64_t> xs) {
        return *(xs.begin() + std::uniform_int_distribution<std::size_t>(0, xs.size() - 1)(rng));
    };
    auto uniform = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
    auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
    Case c;
    c.dtype = dtype;
    c.seed = rng();
    const std::int64_t G = pick({1, 1, 2, 3, 4, 8, 16, 32, 33});
    c.N2 = G >= 16 ? 1 : pick({1, 2, 3});
    c.N1 = G * c.N2;
    c.Dk = pick({1, 5, 8, 16, 24, 33, 64});
    c.Dv = chance(0.5) ? c.Dk : pick({1, 7, 16, 32, 48});
    c.bs = pick({1, 3, 7, 8, 16, 32, 64});
    c.C = uniform(1, 12);
    const std::int64_t B = pick({1, 1, 2, 3, 4});
    c.varlen = B > 1 || chance(0.3);
    // Keep the work per case small: rows see at most a few hundred keys.
    const std::int64_t max_len = G >= 16 ? 40 : 90;
    c.q_lens.clear();
    c.kv_lens.clear();
    for (std::int64_t b = 0; b < B; ++b) {
        c.q_lens.push_back(chance(0.1) ? 0 : uniform(1, max_len));
        c.kv_lens.push_back(chance(0.1) ? 0 : (chance(0.5) ? c.q_lens.back() : uniform(1, max_len + 40)));
    }
    if (c.varlen) {
        c.pad_q = chance(0.4) ? uniform(1, 6) : 0;
        c.pad_kv = chance(0.4) ? uniform(1, 6) : 0;
    }
    c.causal = chance(0.6);
    c.transposed = chance(0.3);
    c.empty_slot = pick({0, 1, 3}) / 10.0;
    c.duplicate = pick({0, 1, 3}) / 10.0;
    c.beyond_causal = pick({0, 1, 5}) / 10.0;
    return c;
}

Tensors::Tensors(const Case& cs) : c(cs) {
    std::mt19937_64 rng(c.seed);
    const std::int64_t T1 = c.T1(), T2 = c.T2();
    params.scale = c.scale != 0.0 ? c.scale : 1.0 / std::sqrt(static_cast<double>(c.Dk));
    params.head_num = c.N1;
    params.block_size = c.bs;
    params.block_count = c.C;
    params.sparse_mode = c.causal ? opennsa::kSparseModeCausal : opennsa::kSparseModeNone;
    if (c.varlen) {
        std::vector<std::int64_t> cq, ckv;
        std::int64_t sq = 0, skv = 0;
        for (std::size_t b = 0; b < c.q_lens.size(); ++b) {
            cq.push_back(sq += c.q_lens[b]);
            ckv.push_back(skv += c.kv_lens[b]);
        }
        params.cu_seqlens_q = cq;
        params.cu_seqlens_kv = ckv;
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
    topk = HostTensor::make(DType::i32, T1, c.N2, c.C, c.transposed);
    q.fill_normal(rng);
    k.fill_normal(rng);
    v.fill_normal(rng);
    dO.fill_normal(rng);

    // Selection: per valid row, blocks of its batch (mostly causal-visible ones when causal),
    // with empty slots and duplicates mixed in. Padding rows hold garbage that is never read.
    std::uniform_real_distribution<double> u01(0, 1);
    std::int64_t t = 0;
    for (std::size_t b = 0; b < c.q_lens.size(); ++b) {
        const std::int64_t blocks = opennsa::detail::ceil_div(c.kv_lens[b], c.bs);
        for (std::int64_t i = 0; i < c.q_lens[b]; ++i, ++t)
            for (std::int64_t n = 0; n < c.N2; ++n)
                for (std::int64_t j = 0; j < c.C; ++j) {
                    std::int64_t x = -1;
                    if (blocks > 0 && u01(rng) >= c.empty_slot) {
                        const std::int64_t causal_hi = std::min(blocks - 1, i / c.bs);
                        const std::int64_t hi = (c.causal && u01(rng) >= c.beyond_causal) ? causal_hi : blocks - 1;
                        x = std::uniform_int_distribution<std::int64_t>(0, hi)(rng);
                        if (j > 0 && u01(rng) < c.duplicate) {
                            const double prev = topk.get(t, n, std::uniform_int_distribution<std::int64_t>(0, j - 1)(rng));
                            if (prev >= 0) x = static_cast<std::int64_t>(prev);
                        }
                    }
                    topk.set(t, n, j, static_cast<double>(x));
                }
    }
    for (; t < T1; ++t)
        for (std::int64_t n = 0; n < c.N2; ++n)
            for (std::int64_t j = 0; j < c.C; ++j)
                topk.set(t, n, j, static_cast<double>(std::uniform_int_distribution<std::int32_t>(-1000, 100000)(rng)));
    poison_outputs();
}

void Tensors::poison_outputs() {
    out.poison();
    smax.poison();
    ssum.poison();
    dq.poison();
    dk.poison();
    dv.poison();
}

opennsa::ForwardArgs Tensors::forward_args() {
    return {.query = q.view, .key = k.view, .value = v.view, .topk = topk.view, .atten_mask = {},
            .out = out.view, .softmax_max = smax.view, .softmax_sum = ssum.view};
}

opennsa::BackwardArgs Tensors::backward_args() {
    return {.query = q.view, .key = k.view, .value = v.view, .out = out.view, .out_grad = dO.view,
            .softmax_max = smax.view, .softmax_sum = ssum.view, .topk = topk.view, .atten_mask = {},
            .query_grad = dq.view, .key_grad = dk.view, .value_grad = dv.view};
}

void Tensors::set_forward_from_reference() {
    const auto p = sel::validate_forward(forward_args(), params);
    const auto ref = sel::reference::forward(p);
    const std::int64_t T1 = c.T1();
    for (std::int64_t t = 0; t < T1; ++t)
        for (std::int64_t h = 0; h < c.N1; ++h) {
            for (std::int64_t d = 0; d < c.Dv; ++d)
                out.set(t, h, d, ref.out[static_cast<std::size_t>((t * c.N1 + h) * c.Dv + d)]);
            for (int e = 0; e < 8; ++e) {
                smax.set(t, h, e, ref.max[static_cast<std::size_t>(t * c.N1 + h)]);
                ssum.set(t, h, e, ref.sum[static_cast<std::size_t>(t * c.N1 + h)]);
            }
        }
}

::testing::AssertionResult stats_ok(const Tensors& t, const sel::reference::ForwardResult& ref) {
    const std::int64_t T1 = t.c.T1();
    for (std::int64_t r = 0; r < T1; ++r)
        for (std::int64_t h = 0; h < t.c.N1; ++h) {
            const std::size_t row = static_cast<std::size_t>(r * t.c.N1 + h);
            for (int e = 1; e < 8; ++e)
                if (std::memcmp(t.smax.bytes.data() + t.smax.offset_bytes(r, h, e),
                                t.smax.bytes.data() + t.smax.offset_bytes(r, h, 0), 4) != 0 ||
                    std::memcmp(t.ssum.bytes.data() + t.ssum.offset_bytes(r, h, e),
                                t.ssum.bytes.data() + t.ssum.offset_bytes(r, h, 0), 4) != 0)
                    return ::testing::AssertionFailure() << "softmax row [" << r << ", " << h << "]: copies differ";
            const double m = t.smax.get(r, h, 0), s = t.ssum.get(r, h, 0);
            if (ref.sum[row] == 0.0) {
                if (m != 0.0 || s != 0.0)
                    return ::testing::AssertionFailure() << "row [" << r << ", " << h << "] sees no key but max = " << m
                                                         << ", sum = " << s;
                continue;
            }
            const double lse = std::log(s) + m, want = std::log(ref.sum[row]) + ref.max[row];
            if (!(std::abs(lse - want) <= 1e-3))
                return ::testing::AssertionFailure() << "row [" << r << ", " << h << "]: log-sum-exp " << lse
                                                     << " vs reference " << want;
        }
    return ::testing::AssertionSuccess();
}

}  // namespace nsa_test
