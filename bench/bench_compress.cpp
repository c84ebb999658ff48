// Google Benchmark targets for the compression operator (opennsa::compress / compress_backward) at
// the training shape T = 8192 (and 65536, past a 32 MiB L3), N = 4, D = 192 / 128, l = 32, d = 16,
// one batch, bf16 and fp16, all library threads. "bytes_per_second" counts the minimum traffic of
// a pass:
//   forward   read input T*N*D + weight l*N, write output Tc*N*D         (elements of 2 bytes)
//   backward  read outputGrad Tc*N*D + input T*N*D + weight, write inputGrad T*N*D + weightGrad
// BM_StreamRead / BM_StreamCopy stream the same number of input bytes with the same threads: the
// machine's streaming bandwidth at that size, to compare against.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/convert.hpp"
#include "core/threading.hpp"
#include "opennsa/opennsa.hpp"

namespace {

using opennsa::DType;
using opennsa::TensorView;

constexpr std::int64_t kN = 4, kL = 32, kStride = 16;

std::vector<std::uint16_t> random_16bit(std::size_t n, DType dtype) {
    std::mt19937 rng(7);
    std::normal_distribution<float> nd;
    std::vector<std::uint16_t> v(n);
    for (auto& x : v)
        x = dtype == DType::bf16 ? opennsa::detail::f32_to_bf16(nd(rng)) : opennsa::detail::f32_to_f16(nd(rng));
    return v;
}

// args: T, D, dtype (0 bf16, 1 fp16), direction (0 forward, 1 backward)
void BM_Compress(benchmark::State& state) {
    const std::int64_t T = state.range(0), D = state.range(1);
    const DType dtype = state.range(2) == 0 ? DType::bf16 : DType::f16;
    const bool backward = state.range(3) != 0;
    opennsa::CompressParams p;
    p.block_size = kL;
    p.stride = kStride;
    p.seq_lens = {T};
    const std::int64_t Tc = opennsa::compressed_token_count(T, p);
    const auto input = random_16bit(std::size_t(T * kN * D), dtype);
    const auto weight = random_16bit(std::size_t(kL * kN), dtype);
    const auto output_grad = random_16bit(std::size_t(Tc * kN * D), dtype);
    std::vector<std::uint16_t> output(std::size_t(Tc * kN * D)), input_grad(input.size()), weight_grad(weight.size());
    const TensorView in = TensorView::contiguous(input.data(), dtype, {T, kN, D});
    const TensorView w = TensorView::contiguous(weight.data(), dtype, {kL, kN});
    const opennsa::CompressArgs fa{in, w, TensorView::contiguous(output.data(), dtype, {Tc, kN, D})};
    const opennsa::CompressGradArgs ba{TensorView::contiguous(output_grad.data(), dtype, {Tc, kN, D}), in, w,
                                       TensorView::contiguous(input_grad.data(), dtype, {T, kN, D}),
                                       TensorView::contiguous(weight_grad.data(), dtype, {kL, kN})};
    std::vector<std::byte> ws(backward ? opennsa::compress_backward_workspace_bytes(ba, p) + 64 : 64);
    auto* base = reinterpret_cast<std::byte*>((reinterpret_cast<std::uintptr_t>(ws.data()) + 63) & ~std::uintptr_t{63});
    const std::span<std::byte> workspace(base, ws.size() - 64);
    for (auto _ : state) {
        if (backward)
            opennsa::compress_backward(ba, p, workspace);
        else
            opennsa::compress(fa, p, workspace);
        benchmark::ClobberMemory();
    }
    const std::int64_t elements = backward ? Tc * kN * D + 2 * T * kN * D + 2 * kL * kN : T * kN * D + kL * kN + Tc * kN * D;
    state.SetBytesProcessed(state.iterations() * elements * 2);
    state.counters["threads"] = opennsa::num_threads();
}

void compress_args(benchmark::internal::Benchmark* b) {
    for (std::int64_t T : {8192, 65536})
        for (std::int64_t D : {192, 128})
            for (std::int64_t dtype : {0, 1})
                for (std::int64_t dir : {0, 1}) b->Args({T, D, dtype, dir});
}
BENCHMARK(BM_Compress)->Apply(compress_args)->UseRealTime()->Unit(benchmark::kMicrosecond);

// Streaming references over T*N*D 16-bit elements, in 64 KiB tasks on the library's threads.
void stream(benchmark::State& state, bool copy) {
    const std::int64_t bytes = state.range(0) * kN * state.range(1) * 2;
    std::vector<std::uint64_t> src(std::size_t(bytes / 8), 1), dst(copy ? src.size() : 0);
    constexpr std::int64_t kTask = 8192;  // uint64 words
    const std::int64_t words = std::int64_t(src.size()), tasks = (words + kTask - 1) / kTask;
    const int threads = opennsa::detail::thread_count();
    std::vector<std::uint64_t> sums(static_cast<std::size_t>(tasks));
    for (auto _ : state) {
        opennsa::detail::parallel_for(tasks, threads, [&](std::int64_t t, int) {
            const std::int64_t w0 = t * kTask, n = std::min(kTask, words - w0);
            if (copy) {
                std::memcpy(dst.data() + w0, src.data() + w0, std::size_t(n) * 8);
            } else {
                std::uint64_t s = 0;
                for (std::int64_t i = 0; i < n; ++i) s += src[std::size_t(w0 + i)];
                sums[std::size_t(t)] = s;
            }
        });
        benchmark::DoNotOptimize(sums.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(state.iterations() * bytes * (copy ? 2 : 1));
}
void BM_StreamRead(benchmark::State& state) { stream(state, false); }
void BM_StreamCopy(benchmark::State& state) { stream(state, true); }
BENCHMARK(BM_StreamRead)->Args({8192, 192})->Args({65536, 192})->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_StreamCopy)->Args({8192, 192})->Args({65536, 192})->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
