// Google Benchmark targets for the AVX2 microkernel pieces, at the shapes the passes use
// (Dk=192, Dv=128, bs=64, G=16). Reports GFLOP/s ("FLOPS" counter) of one thread.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/avx2/kernels.hpp"
#include "kernels/dispatch.hpp"

namespace {

[[maybe_unused]] std::vector<float> random_floats(std::size_t n) {  // (unused off x86-64)
    std::mt19937 rng(7);
    std::normal_distribution<float> nd;
    std::vector<float> v(n);
    for (float& x : v) x = nd(rng);
    return v;
}

// C[M x N] (+)= A[M x K] B[K x N]; args: M, N, K, accumulate.
void BM_Gemm(benchmark::State& state) {
#if defined(__x86_64__)
    if (!opennsa::detail::cpu_has_avx2()) {
        state.SkipWithError("no AVX2");
        return;
    }
    const std::int64_t M = state.range(0), N = state.range(1), K = state.range(2);
    const bool acc = state.range(3) != 0;
    const auto a = random_floats(std::size_t(M * K)), b = random_floats(std::size_t(K * N));
    std::vector<float> c(std::size_t(M * N));
    for (auto _ : state) {
        opennsa::detail::avx2::gemm(M, N, K, a.data(), K, b.data(), N, c.data(), N, acc);
        benchmark::DoNotOptimize(c.data());
    }
    state.counters["FLOPS"] = benchmark::Counter(double(2 * M * N * K), benchmark::Counter::kIsIterationInvariantRate);
#else
    state.SkipWithError("x86-64 only");
#endif
}
// S = Q K^T (G x bs over Dk), O += P V (G x Dv over bs), dV += P^T dO (bs x Dv over 64 rows).
BENCHMARK(BM_Gemm)->Args({16, 64, 192, 0})->Args({16, 128, 64, 1})->Args({64, 128, 64, 1})->Args({64, 192, 64, 1})
    ->Args({64, 64, 192, 0})->Args({1, 64, 192, 0});

void BM_Exp(benchmark::State& state) {
#if defined(__x86_64__)
    if (!opennsa::detail::cpu_has_avx2()) {
        state.SkipWithError("no AVX2");
        return;
    }
    auto in = random_floats(4096);
    for (float& x : in) x = -std::abs(x) * 4;
    std::vector<float> out(in.size());
    for (auto _ : state) {
        opennsa::detail::avx2::exp(in.data(), out.data(), std::int64_t(in.size()));
        benchmark::DoNotOptimize(out.data());
    }
    state.SetItemsProcessed(state.iterations() * std::int64_t(in.size()));
#else
    state.SkipWithError("x86-64 only");
#endif
}
BENCHMARK(BM_Exp);

// Row conversions: widen (arg 0) or narrow (arg 1) 4096 values, dtype bf16 (arg 0) or fp16 (1).
void BM_Convert(benchmark::State& state) {
#if defined(__x86_64__)
    if (!opennsa::detail::cpu_has_avx2()) {
        state.SkipWithError("no AVX2");
        return;
    }
    const bool narrow = state.range(0) != 0;
    const opennsa::DType dtype = state.range(1) == 0 ? opennsa::DType::bf16 : opennsa::DType::f16;
    const auto wide = random_floats(4096);
    std::vector<float> back(wide.size());
    std::vector<std::uint16_t> half(wide.size());
    opennsa::detail::avx2::narrow(dtype, wide.data(), half.data(), std::int64_t(wide.size()));
    for (auto _ : state) {
        if (narrow)
            opennsa::detail::avx2::narrow(dtype, wide.data(), half.data(), std::int64_t(wide.size()));
        else
            opennsa::detail::avx2::widen(dtype, half.data(), back.data(), std::int64_t(wide.size()));
        benchmark::DoNotOptimize(half.data());
        benchmark::DoNotOptimize(back.data());
    }
    state.SetItemsProcessed(state.iterations() * std::int64_t(wide.size()));
#else
    state.SkipWithError("x86-64 only");
#endif
}
BENCHMARK(BM_Convert)->ArgNames({"narrow", "fp16"})->Args({0, 0})->Args({0, 1})->Args({1, 0})->Args({1, 1});

}  // namespace

BENCHMARK_MAIN();
