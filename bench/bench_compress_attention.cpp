// Google Benchmark targets for the compress attention at the NSA layer's shape: N1 = 64, N2 = 4,
// Dk = 192, Dv = 128, l = 32, d = 16, l' = 64, k = 16, sparseMode 2 (the built-in causal rule),
// bf16 and fp16, T = 8192 (the measured shape) and T = 2048 (quick runs). "FLOPS" counts only
// visible (query, compressed key) pairs: 2 * rows * keys * (Dk + Dv) forward, 2 * rows * keys *
// (3 Dk + 2 Dv) backward. BM_CompressTopkSelection times the block scoring and ranking alone (the
// forward's per-token stencil and partial selection) on the same number of rows, for the top-k's
// share of the forward. Threads: the library's default (OPENNSA_NUM_THREADS).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "core/convert.hpp"
#include "ops/compress_attention/problem.hpp"
#include "ops/compress_attention/scores.hpp"
#include "opennsa/opennsa.hpp"

namespace {

using opennsa::DType;
using opennsa::TensorView;

constexpr std::int64_t kN1 = 64, kN2 = 4, kDk = 192, kDv = 128, kL = 32, kD = 16, kSel = 64, kK = 16;

std::int64_t compressed(std::int64_t T) { return T < kL ? 0 : (T - kL) / kD + 1; }

// Visible (query, compressed key) pairs per head under the built-in rule.
double visible_pairs(std::int64_t T) {
    const std::int64_t C = compressed(T);
    double pairs = 0;
    for (std::int64_t i = kL - 1; i < T; ++i) pairs += static_cast<double>(std::min(C, (i - (kL - 1)) / kD + 1));
    return pairs;
}

std::vector<std::uint16_t> random_16bit(std::size_t n, DType dtype, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd;
    std::vector<std::uint16_t> v(n);
    for (auto& x : v) {
        const float f = nd(rng);
        x = dtype == DType::bf16 ? opennsa::detail::f32_to_bf16(f) : opennsa::detail::f32_to_f16(f);
    }
    return v;
}

struct Problem {
    std::int64_t T, C;
    DType dtype;
    std::vector<std::uint16_t> q, k, v, out, dO, dq, dk, dv;
    std::vector<std::int32_t> topk;
    std::vector<float> smax, ssum;
    opennsa::CompressAttentionParams params;

    Problem(std::int64_t t, DType dt) : T(t), C(compressed(t)), dtype(dt) {
        const auto n = [](std::int64_t a, std::int64_t b, std::int64_t c) { return static_cast<std::size_t>(a * b * c); };
        q = random_16bit(n(T, kN1, kDk), dtype, 1);
        k = random_16bit(n(C, kN2, kDk), dtype, 2);
        v = random_16bit(n(C, kN2, kDv), dtype, 3);
        dO = random_16bit(n(T, kN1, kDv), dtype, 4);
        out.resize(n(T, kN1, kDv));
        dq.resize(q.size());
        dk.resize(k.size());
        dv.resize(v.size());
        topk.resize(n(T, kN2, kK));
        smax.resize(n(T, kN1, 8));
        ssum.resize(n(T, kN1, 8));
        params.scale = 1.0 / std::sqrt(static_cast<double>(kDk));
        params.head_num = kN1;
        params.compress_block_size = kL;
        params.compress_stride = kD;
        params.select_block_size = kSel;
        params.select_block_count = kK;
        params.sparse_mode = opennsa::kCompressSparseModeCausal;
    }
    opennsa::CompressAttentionArgs forward_args() {
        return {.query = TensorView::contiguous(q.data(), dtype, {T, kN1, kDk}),
                .key = TensorView::contiguous(k.data(), dtype, {C, kN2, kDk}),
                .value = TensorView::contiguous(v.data(), dtype, {C, kN2, kDv}),
                .atten_mask = {},
                .topk_mask = {},
                .out = TensorView::contiguous(out.data(), dtype, {T, kN1, kDv}),
                .topk = TensorView::contiguous(topk.data(), DType::i32, {T, kN2, kK}),
                .softmax_max = TensorView::contiguous(smax.data(), DType::f32, {T, kN1, 8}),
                .softmax_sum = TensorView::contiguous(ssum.data(), DType::f32, {T, kN1, 8})};
    }
    opennsa::CompressAttentionGradArgs backward_args() {
        const auto f = forward_args();
        return {.query = f.query, .key = f.key, .value = f.value, .out = f.out,
                .out_grad = TensorView::contiguous(dO.data(), dtype, {T, kN1, kDv}), .softmax_max = f.softmax_max,
                .softmax_sum = f.softmax_sum, .atten_mask = {},
                .query_grad = TensorView::contiguous(dq.data(), dtype, {T, kN1, kDk}),
                .key_grad = TensorView::contiguous(dk.data(), dtype, {C, kN2, kDk}),
                .value_grad = TensorView::contiguous(dv.data(), dtype, {C, kN2, kDv})};
    }
};

DType dtype_arg(std::int64_t x) { return x == 0 ? DType::bf16 : DType::f16; }

void BM_CompressAttentionForward(benchmark::State& state) {
    Problem pb(state.range(0), dtype_arg(state.range(1)));
    const auto args = pb.forward_args();
    std::vector<std::byte> ws(opennsa::compress_attention_workspace_bytes(args, pb.params) + 64);
    const std::span<std::byte> aligned(reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(ws.data()) + 63) & ~std::uintptr_t{63}),
                                       ws.size() - 64);
    for (auto _ : state) {
        opennsa::compress_attention(args, pb.params, aligned);
        benchmark::DoNotOptimize(pb.out.data());
    }
    state.counters["FLOPS"] = benchmark::Counter(2.0 * visible_pairs(pb.T) * kN1 * (kDk + kDv),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void BM_CompressAttentionBackward(benchmark::State& state) {
    Problem pb(state.range(0), dtype_arg(state.range(1)));
    opennsa::compress_attention(pb.forward_args(), pb.params);
    const auto args = pb.backward_args();
    std::vector<std::byte> ws(opennsa::compress_attention_backward_workspace_bytes(args, pb.params) + 64);
    const std::span<std::byte> aligned(reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(ws.data()) + 63) & ~std::uintptr_t{63}),
                                       ws.size() - 64);
    for (auto _ : state) {
        opennsa::compress_attention_backward(args, pb.params, aligned);
        benchmark::DoNotOptimize(pb.dq.data());
    }
    state.counters["FLOPS"] = benchmark::Counter(2.0 * visible_pairs(pb.T) * kN1 * (3 * kDk + 2 * kDv),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

// The forward's per-(token, kv head) scoring and ranking, single-threaded, on T * N2 rows with
// scores shaped like the causal forward's (blocks past the visible prefix score 0).
void BM_CompressTopkSelection(benchmark::State& state) {
    namespace ca = opennsa::detail::compress_attention;
    const std::int64_t T = state.range(0), C = compressed(T);
    ca::Problem p;
    p.m = kSel / kD;
    p.n = kL / kD;
    p.l = kL;
    p.d = kD;
    p.max_c = C;
    p.max_ns = (C + p.m - 1) / p.m;
    p.sel_count = kK;
    std::mt19937_64 rng(9);
    std::exponential_distribution<float> ed(1.0f);
    const std::int64_t sample = std::min<std::int64_t>(T, 512);  // distinct psum rows, reused cyclically
    std::vector<float> psum(static_cast<std::size_t>(sample * C), 0.0f);
    for (std::int64_t x = 0; x < sample; ++x) {
        const std::int64_t i = (x * T) / sample, nv = i < kL - 1 ? 0 : std::min(C, (i - (kL - 1)) / kD + 1);
        float* row = psum.data() + x * C;
        float total = 0;
        for (std::int64_t j = 0; j < nv; ++j) total += row[j] = ed(rng);
        for (std::int64_t j = 0; j < nv; ++j) row[j] *= 16.0f / total;  // G heads of probabilities
    }
    std::vector<float> score(static_cast<std::size_t>(p.max_ns));
    std::vector<std::uint8_t> forced(static_cast<std::size_t>(p.max_ns), 0);
    std::vector<std::uint64_t> ranking(static_cast<std::size_t>(p.max_ns));
    std::vector<std::int32_t> top(kK);
    for (auto _ : state) {
        for (std::int64_t t = 0; t < T; ++t)
            for (std::int64_t n2 = 0; n2 < kN2; ++n2) {
                const float* row = psum.data() + (t % sample) * C;
                ca::block_scores(p, row, C, p.max_ns, score.data());
                ca::rank_blocks(score.data(), forced.data(), p.max_ns, kK, ranking.data(), top.data());
                benchmark::DoNotOptimize(top.data());
            }
    }
    state.SetItemsProcessed(state.iterations() * T * kN2);
}

}  // namespace

BENCHMARK(BM_CompressAttentionForward)->ArgNames({"T", "fp16"})->Args({2048, 0})->Args({2048, 1})->Args({8192, 0})
    ->Args({8192, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CompressAttentionBackward)->ArgNames({"T", "fp16"})->Args({2048, 0})->Args({2048, 1})->Args({8192, 0})
    ->Args({8192, 1})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_CompressTopkSelection)->ArgName("T")->Arg(2048)->Arg(8192)->Unit(benchmark::kMillisecond);
