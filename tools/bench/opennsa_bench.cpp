// opennsa-bench: times the operators on NSA-like inputs and reports the attention ones in GFLOP/s
// against this machine's measured fp32 FMA peak (DESIGN.md's FLOP convention, visible pairs only)
// and the memory-bound compression in GB/s against its measured streaming bandwidth.
//
//   opennsa-bench --preset bwd-bf16-n64 --json
//   opennsa-bench --preset cattn-fwd-bf16-n64 --preset compress-bf16
//   opennsa-bench --preset cinfer-bf16-b16 --preset cinfer-bf16-b1 --reps 21
//   opennsa-bench --op backward --dtype bf16 --T 4096 --N1 16 --N2 1 --threads 2 --reps 5
//   opennsa-bench --peak
//   opennsa-bench --preset bwd-bf16-n64 --threads 2 --scaling   # 1 vs 2 threads, interleaved
//   opennsa-bench --preset cattn-infer-bf16-b16 --preset cattn-infer-bf16-b1   # one decode step
#include <sys/resource.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "core/convert.hpp"
#include "opennsa/opennsa.hpp"

namespace {

using opennsa::DType;
using opennsa::TensorView;
using Clock = std::chrono::steady_clock;

// op: the selected attention's "forward" / "backward"; "compress" / "compress-grad" (of the keys:
// N2 heads of Dk); "compress-attention" / "compress-attention-grad" (built-in causal rule,
// sparse_mode 2, over the C(T) compressed tokens of compression l, stride d; bs and C are l' and k);
// "compress-attention-infer": one decode step (one query token) of B sequences of T raw tokens,
// over their C(T) compressed tokens in a paged cache of page size P (pages scattered at random).
// "select-attention-infer": one decoding step (one query token per sequence) of B sequences of T
// cached tokens in pages of P, bs and C being l' and k.
// "compress-infer": one decoding step of aclnnNsaCompressWithCache, B sequences of T tokens on pages
// of P, every one triggered (N2 heads of Dk).
struct Workload {
    std::string name = "custom";
    std::string op = "backward";
    DType dtype = DType::bf16;
    std::int64_t T = 8192, N1 = 64, N2 = 4, Dk = 192, Dv = 128, bs = 64, C = 16;
    std::int64_t l = 32, d = 16;  // compression block and stride
    std::int64_t B = 1, P = 128;  // decoding: sequences, page size
    bool causal = true;
};

bool is_select(const Workload& w) { return w.op == "forward" || w.op == "backward"; }
bool is_compress(const Workload& w) { return w.op == "compress" || w.op == "compress-grad"; }
bool is_compress_attention(const Workload& w) {
    return w.op == "compress-attention" || w.op == "compress-attention-grad";
}
bool is_cattn_infer(const Workload& w) { return w.op == "compress-attention-infer"; }
bool is_sel_infer(const Workload& w) { return w.op == "select-attention-infer"; }
bool is_decode(const Workload& w) { return is_cattn_infer(w) || is_sel_infer(w); }
bool is_compress_infer(const Workload& w) { return w.op == "compress-infer"; }
std::int64_t compressed_tokens(const Workload& w) { return w.T >= w.l ? (w.T - w.l) / w.d + 1 : 0; }

struct Preset {
    const char* name;
    const char* op;
    DType dtype;
    std::int64_t T, N1, N2;
    std::int64_t B = 1;  // decoding: sequences of T cached tokens
};

// The workloads (Dk=192, Dv=128, bs=64, C=16, causal).
constexpr Preset kPresets[] = {
    {"bwd-bf16-n64", "backward", DType::bf16, 8192, 64, 4},
    {"bwd-f16-n64", "backward", DType::f16, 8192, 64, 4},
    {"fwd-bf16-n64", "forward", DType::bf16, 8192, 64, 4},
    {"fwd-f16-n64", "forward", DType::f16, 8192, 64, 4},
    {"bwd-bf16-g16", "backward", DType::bf16, 4096, 16, 1},
    {"bwd-bf16-g4", "backward", DType::bf16, 4096, 16, 4},
    {"bwd-bf16-g2", "backward", DType::bf16, 4096, 16, 8},
    {"bwd-bf16-g1", "backward", DType::bf16, 4096, 16, 16},
    // The training family (l = 32, d = 16, l' = 64, k = 16, built-in causal rule).
    {"cattn-fwd-bf16-n64", "compress-attention", DType::bf16, 8192, 64, 4},
    {"cattn-fwd-f16-n64", "compress-attention", DType::f16, 8192, 64, 4},
    {"cattn-bwd-bf16-n64", "compress-attention-grad", DType::bf16, 8192, 64, 4},
    {"cattn-bwd-f16-n64", "compress-attention-grad", DType::f16, 8192, 64, 4},
    {"compress-bf16", "compress", DType::bf16, 8192, 64, 4},
    {"compress-f16", "compress", DType::f16, 8192, 64, 4},
    {"compress-grad-bf16", "compress-grad", DType::bf16, 8192, 64, 4},
    {"compress-grad-f16", "compress-grad", DType::f16, 8192, 64, 4},
    // One decoding step (l' = 64, k = 16, page size 128, one query token per sequence).
    {"sel-infer-bf16-b16", "select-attention-infer", DType::bf16, 32768, 64, 4, 16},
    {"sel-infer-bf16-b1", "select-attention-infer", DType::bf16, 131072, 64, 4, 1},
    {"cattn-infer-bf16-b16", "compress-attention-infer", DType::bf16, 32768, 64, 4, 16},
    {"cattn-infer-bf16-b1", "compress-attention-infer", DType::bf16, 131072, 64, 4, 1},
    // One decoding step of the compression (l = 32, d = 16, D = 192: the K cache, P = 128).
    {"cinfer-bf16-b16", "compress-infer", DType::bf16, 32768, 4, 4, 16},
    {"cinfer-bf16-b1", "compress-infer", DType::bf16, 131072, 4, 4, 1},
};


// Visible (query, compressed key) pairs per query head under the built-in causal rule: query i
// sees compressed token j iff j*d + l - 1 <= i.
double compressed_pairs(const Workload& w) {
    const std::int64_t C = compressed_tokens(w);
    double pairs = 0;
    for (std::int64_t i = w.l - 1; i < w.T; ++i) pairs += double(std::min(C, (i - w.l + 1) / w.d + 1));
    return pairs;
}

double flops(const Workload& w) {
    if (is_cattn_infer(w)) return 2.0 * double(w.B) * double(w.N1) * double(compressed_tokens(w)) * double(w.Dk + w.Dv);
    if (is_compress_attention(w)) {
        const double base = 2.0 * double(w.N1) * compressed_pairs(w);
        return w.op == "compress-attention" ? base * double(w.Dk + w.Dv) : base * double(3 * w.Dk + 2 * w.Dv);
    }
    const double base = 2.0 * double(w.T) * double(w.N1) * double(w.C) * double(w.bs);
    return w.op == "forward" ? base * double(w.Dk + w.Dv) : base * double(3 * w.Dk + 2 * w.Dv);
}

// Bytes the compression must move at the least: its inputs read once, its outputs written once.
double compress_bytes(const Workload& w) {
    const double e = double(opennsa::dtype_size(w.dtype));
    const double in = double(w.T) * double(w.N2) * double(w.Dk) * e;
    const double out = double(compressed_tokens(w)) * double(w.N2) * double(w.Dk) * e;
    const double weight = double(w.l) * double(w.N2) * e;
    return w.op == "compress" ? in + out + weight : out + 2 * in + 2 * weight;  // grad: read dOut, input; write dInput
}

// Bytes a compressed-attention decode step must read at the least: the compressed K and V of every sequence, the
// queries and the block tables.
double compress_attention_infer_bytes(const Workload& w) {
    const double e = double(opennsa::dtype_size(w.dtype)), C = double(compressed_tokens(w));
    const double pages = double((compressed_tokens(w) + w.P - 1) / w.P);
    return double(w.B) * (C * double(w.N2) * double(w.Dk + w.Dv) * e + double(w.N1 * w.Dk) * e + pages * 4);
}

// A decoding step must read the l newest raw rows of each sequence and the weights, and write one
// row per sequence (page-table and slot entries, a few bytes each, are not counted).
double compress_infer_bytes(const Workload& w) {
    const double e = double(opennsa::dtype_size(w.dtype)), row = double(w.N2) * double(w.Dk) * e;
    return double(w.B) * (double(w.l) + 1) * row + double(w.l) * double(w.N2) * e;
}

// ---- peak ---------------------------------------------------------------------------------

#if defined(__x86_64__)
// 12 independent FMA chains hide the 4-cycle latency on both FMA pipes.
__attribute__((target("avx2,fma"))) double fma_loop(std::int64_t iters) {
    __m256 a[12];
    for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(float(i) * 1e-3f);
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    for (std::int64_t n = 0; n < iters; ++n)
        for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], x, y);
    __m256 s = a[0];
    for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return double(out[0]);
}
#endif

#if defined(__x86_64__)
// The same chains with zmm registers (AVX-512F) and with the bf16 pair dot product (AVX512_BF16,
// 2 FLOPs per pair, 32 pairs per instruction). Only run where the CPU has them: this project's
// machines do not, so these two loops are compiled but have not been run here.
__attribute__((target("avx512f"))) double fma512_loop(std::int64_t iters) {
    __m512 a[12];
    for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(float(i) * 1e-3f);
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    for (std::int64_t n = 0; n < iters; ++n)
        for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], x, y);
    __m512 s = a[0];
    for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
    float out[16];  // (not _mm512_reduce_add_ps: GCC 12 warns inside it, -Wuninitialized)
    _mm512_storeu_ps(out, s);
    return double(out[0]);
}

__attribute__((target("avx512f,avx512bf16"))) double dpbf16_loop(std::int64_t iters) {
    __m512 a[12];
    for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(float(i) * 1e-3f);
    const __m512bh x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(-1e-3f));
    for (std::int64_t n = 0; n < iters; ++n)
        for (int i = 0; i < 12; ++i) a[i] = _mm512_dpbf16_ps(a[i], x, x);
    __m512 s = a[0];
    for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
    float out[16];  // (not _mm512_reduce_add_ps: GCC 12 warns inside it, -Wuninitialized)
    _mm512_storeu_ps(out, s);
    return double(out[0]);
}
#endif

bool has_avx512() {
#if defined(__x86_64__)
    return __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

bool has_bf16_dot() {
#if defined(__x86_64__)
    return has_avx512() && __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}

#if defined(__x86_64__)
// Only the x86 peaks below use these two (elsewhere they would be unused, an error with -Werror).
bool has_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

// GFLOP/s of `loop` (12 chains of `flops_per_op` FLOPs per iteration) on `threads` threads at
// once, median of 5 runs.
double loop_peak(int threads, double (*loop)(std::int64_t), double flops_per_op) {
    const std::int64_t iters = 20'000'000;  // ~0.1 s per run at 4 GHz
    std::vector<double> runs;
    for (int rep = 0; rep < 5; ++rep) {
        std::atomic<double> sink{0};
        const auto t0 = Clock::now();
        std::vector<std::thread> pool;
        for (int i = 0; i < threads; ++i) pool.emplace_back([&] { sink = sink + loop(iters); });
        for (auto& t : pool) t.join();
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        runs.push_back(double(threads) * double(iters) * 12 * flops_per_op / s * 1e-9);
    }
    std::sort(runs.begin(), runs.end());
    return runs[runs.size() / 2];
}
#endif

// The fp32 FMA peak of the widest vectors the CPU has (ymm with AVX2, zmm with AVX-512F).
double fp32_peak(int threads) {
#if defined(__x86_64__)
    if (has_avx512()) return loop_peak(threads, fma512_loop, 16 * 2);
    if (has_fma()) return loop_peak(threads, fma_loop, 8 * 2);
#endif
    (void)threads;
    return 0.0;
}

// The bf16 dot-product peak (vdpbf16ps), 0 where the CPU lacks it.
double bf16_peak(int threads) {
#if defined(__x86_64__)
    if (has_bf16_dot()) return loop_peak(threads, dpbf16_loop, 32 * 2);
#endif
    (void)threads;
    return 0.0;
}

// ---- memory bandwidth ---------------------------------------------------------------------

// Streaming bandwidth of `threads` threads over buffers far larger than the caches (256 MiB per
// thread): `read` sums them (bytes read / s), `copy` copies one into another (bytes read + written
// / s, STREAM's convention). Median of 5 runs, after one warm-up that also faults the pages in.
struct Bandwidth {
    double read_gbs = 0, copy_gbs = 0;
};

Bandwidth stream_bandwidth(int threads) {
    const std::size_t n = (std::size_t{256} << 20) / sizeof(float);
    std::vector<std::vector<float>> src(static_cast<std::size_t>(threads)), dst(static_cast<std::size_t>(threads));
    for (int i = 0; i < threads; ++i) {
        src[std::size_t(i)].assign(n, 1.0f + float(i));
        dst[std::size_t(i)].assign(n, 0.0f);
    }
    auto timed = [&](auto&& body) {
        std::vector<double> runs;
        for (int rep = -1; rep < 5; ++rep) {
            const auto t0 = Clock::now();
            std::vector<std::thread> pool;
            for (int i = 0; i < threads; ++i) pool.emplace_back([&, i] { body(std::size_t(i)); });
            for (auto& t : pool) t.join();
            if (rep >= 0) runs.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
        }
        std::sort(runs.begin(), runs.end());
        return runs[runs.size() / 2];
    };
    std::atomic<double> sink{0};
    const double read_s = timed([&](std::size_t i) {
        const float* p = src[i].data();
        float acc[16] = {};
        for (std::size_t j = 0; j + 16 <= n; j += 16)
            for (int l = 0; l < 16; ++l) acc[l] += p[j + std::size_t(l)];
        float s = 0;
        for (float a : acc) s += a;
        sink = sink + double(s);
    });
    const double copy_s = timed([&](std::size_t i) { std::memcpy(dst[i].data(), src[i].data(), n * sizeof(float)); });
    const double bytes = double(threads) * double(n) * sizeof(float);
    return {bytes / read_s * 1e-9, 2 * bytes / copy_s * 1e-9};
}

// ---- data ---------------------------------------------------------------------------------

struct Buffer {
    std::vector<unsigned char> bytes;
    TensorView view;
    Buffer(DType t, std::int64_t a, std::int64_t b, std::int64_t c)
        : bytes(std::size_t(a * b * c) * opennsa::dtype_size(t)),
          view(TensorView::contiguous(bytes.data(), t, {a, b, c})) {}
    void fill(std::mt19937_64& rng, double stddev) {
        std::normal_distribution<float> nd(0.0f, float(stddev));
        const std::size_t n = bytes.size() / opennsa::dtype_size(view.dtype);
        for (std::size_t i = 0; i < n; ++i) {
            const float v = nd(rng);
            opennsa::detail::store_from_f32(bytes.data() + i * opennsa::dtype_size(view.dtype), view.dtype, v);
        }
    }
};

// NSA-like selection: block 0, the local block, then distinct random earlier (visible) blocks;
// -1 where a token has fewer visible blocks than C.
void fill_topk(Buffer& topk, const Workload& w, std::mt19937_64& rng) {
    auto* idx = reinterpret_cast<std::int32_t*>(topk.bytes.data());
    const std::int64_t blocks = (w.T + w.bs - 1) / w.bs;
    std::vector<std::int32_t> pool;
    for (std::int64_t t = 0; t < w.T; ++t) {
        const std::int64_t local = w.causal ? t / w.bs : blocks - 1;
        for (std::int64_t n2 = 0; n2 < w.N2; ++n2) {
            std::int32_t* row = idx + (t * w.N2 + n2) * w.C;
            std::fill(row, row + w.C, -1);
            std::int64_t n = 0;
            row[n++] = 0;
            if (local != 0 && n < w.C) row[n++] = std::int32_t(local);
            pool.clear();
            for (std::int64_t x = 1; x < local; ++x) pool.push_back(std::int32_t(x));
            for (std::int64_t m = 0; n < w.C && m < std::int64_t(pool.size()); ++m) {
                std::uniform_int_distribution<std::size_t> pick(std::size_t(m), pool.size() - 1);
                std::swap(pool[std::size_t(m)], pool[pick(rng)]);
                row[n++] = pool[std::size_t(m)];
            }
        }
    }
}

std::int64_t peak_rss_bytes() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return std::int64_t(u.ru_maxrss) * 1024;
}

struct Result {
    double median = 0, min = 0;
    std::size_t workspace = 0;  // bytes the library allocates per call beyond inputs and outputs
    double bytes = 0;           // decoding: bytes a call must read
};

// The call a workload times, with its buffers (kept alive with it) and its workspace size.
struct Prepared {
    std::vector<Buffer> buffers;
    std::function<void()> run;
    std::function<void()> before;  // untimed, before each run (decoding: evict the caches)
    std::size_t workspace = 0;
    double bytes = 0;  // decoding: bytes one step must read
};

Prepared prepare_select(const Workload& w, int threads, std::mt19937_64& rng) {
    Prepared p;
    const DType t = w.dtype;
    p.buffers.reserve(12);
    auto& q = p.buffers.emplace_back(t, w.T, w.N1, w.Dk);
    auto& k = p.buffers.emplace_back(t, w.T, w.N2, w.Dk);
    auto& v = p.buffers.emplace_back(t, w.T, w.N2, w.Dv);
    auto& topk = p.buffers.emplace_back(DType::i32, w.T, w.N2, w.C);
    auto& out = p.buffers.emplace_back(t, w.T, w.N1, w.Dv);
    auto& smax = p.buffers.emplace_back(DType::f32, w.T, w.N1, 8);
    auto& ssum = p.buffers.emplace_back(DType::f32, w.T, w.N1, 8);
    q.fill(rng, 1.0);
    k.fill(rng, 1.0);
    v.fill(rng, 1.0);
    fill_topk(topk, w, rng);
    opennsa::Params params;
    params.scale = 1.0 / std::sqrt(double(w.Dk));
    params.head_num = w.N1;
    params.block_size = w.bs;
    params.block_count = w.C;
    params.sparse_mode = w.causal ? opennsa::kSparseModeCausal : opennsa::kSparseModeNone;
    const opennsa::ForwardArgs fa{q.view, k.view, v.view, topk.view, {}, out.view, smax.view, ssum.view};
    if (w.op == "forward") {
        p.run = [fa, params] { opennsa::forward(fa, params); };
        p.workspace = opennsa::forward_workspace_bytes(fa, params);
        return p;
    }
    opennsa::set_num_threads(threads);
    opennsa::forward(fa, params);  // out and statistics for the backward
    auto& dO = p.buffers.emplace_back(t, w.T, w.N1, w.Dv);
    dO.fill(rng, 1.0);
    auto& dq = p.buffers.emplace_back(t, w.T, w.N1, w.Dk);
    auto& dk = p.buffers.emplace_back(t, w.T, w.N2, w.Dk);
    auto& dv = p.buffers.emplace_back(t, w.T, w.N2, w.Dv);
    const opennsa::BackwardArgs ba{q.view, k.view,      v.view,  out.view, dO.view, smax.view, ssum.view, topk.view,
                                   {},     dq.view,     dk.view, dv.view};
    p.run = [ba, params] { opennsa::backward(ba, params); };
    p.workspace = opennsa::backward_workspace_bytes(ba, params);
    return p;
}

Prepared prepare_compress(const Workload& w, std::mt19937_64& rng) {
    Prepared p;
    const DType t = w.dtype;
    const std::int64_t Tc = compressed_tokens(w);
    p.buffers.reserve(6);
    auto& in = p.buffers.emplace_back(t, w.T, w.N2, w.Dk);
    auto& weight = p.buffers.emplace_back(t, w.l, w.N2, 1);
    auto& out = p.buffers.emplace_back(t, Tc, w.N2, w.Dk);
    in.fill(rng, 1.0);
    weight.fill(rng, 1.0 / double(w.l));
    opennsa::CompressParams params;
    params.block_size = w.l;
    params.stride = w.d;
    params.seq_lens = {w.T};
    TensorView wv = weight.view;
    wv.rank = 2;  // [l, N]
    if (w.op == "compress") {
        const opennsa::CompressArgs a{in.view, wv, out.view};
        p.run = [a, params] { opennsa::compress(a, params); };
        p.workspace = opennsa::compress_workspace_bytes(a, params);
        return p;
    }
    out.fill(rng, 1.0);  // the output's gradient
    auto& din = p.buffers.emplace_back(t, w.T, w.N2, w.Dk);
    auto& dweight = p.buffers.emplace_back(t, w.l, w.N2, 1);
    TensorView dwv = dweight.view;
    dwv.rank = 2;
    const opennsa::CompressGradArgs a{out.view, in.view, wv, din.view, dwv};
    p.run = [a, params] { opennsa::compress_backward(a, params); };
    p.workspace = opennsa::compress_backward_workspace_bytes(a, params);
    return p;
}

Prepared prepare_compress_attention(const Workload& w, int threads, std::mt19937_64& rng) {
    Prepared p;
    const DType t = w.dtype;
    const std::int64_t Tc = compressed_tokens(w);
    p.buffers.reserve(12);
    auto& q = p.buffers.emplace_back(t, w.T, w.N1, w.Dk);
    auto& k = p.buffers.emplace_back(t, Tc, w.N2, w.Dk);
    auto& v = p.buffers.emplace_back(t, Tc, w.N2, w.Dv);
    auto& out = p.buffers.emplace_back(t, w.T, w.N1, w.Dv);
    auto& topk = p.buffers.emplace_back(DType::i32, w.T, w.N2, w.C);
    auto& smax = p.buffers.emplace_back(DType::f32, w.T, w.N1, 8);
    auto& ssum = p.buffers.emplace_back(DType::f32, w.T, w.N1, 8);
    q.fill(rng, 1.0);
    k.fill(rng, 1.0);
    v.fill(rng, 1.0);
    opennsa::CompressAttentionParams params;
    params.scale = 1.0 / std::sqrt(double(w.Dk));
    params.head_num = w.N1;
    params.compress_block_size = w.l;
    params.compress_stride = w.d;
    params.select_block_size = w.bs;
    params.select_block_count = w.C;
    params.sparse_mode = opennsa::kCompressSparseModeCausal;
    const opennsa::CompressAttentionArgs fa{q.view, k.view, v.view, {}, {}, out.view, topk.view, smax.view, ssum.view};
    if (w.op == "compress-attention") {
        p.run = [fa, params] { opennsa::compress_attention(fa, params); };
        p.workspace = opennsa::compress_attention_workspace_bytes(fa, params);
        return p;
    }
    opennsa::set_num_threads(threads);
    opennsa::compress_attention(fa, params);
    auto& dO = p.buffers.emplace_back(t, w.T, w.N1, w.Dv);
    dO.fill(rng, 1.0);
    auto& dq = p.buffers.emplace_back(t, w.T, w.N1, w.Dk);
    auto& dk = p.buffers.emplace_back(t, Tc, w.N2, w.Dk);
    auto& dv = p.buffers.emplace_back(t, Tc, w.N2, w.Dv);
    const opennsa::CompressAttentionGradArgs ba{q.view, k.view, v.view, out.view, dO.view, smax.view, ssum.view, {},
                                                dq.view, dk.view, dv.view};
    p.run = [ba, params] { opennsa::compress_attention_backward(ba, params); };
    p.workspace = opennsa::compress_attention_backward_workspace_bytes(ba, params);
    return p;
}

Prepared prepare_compress_attention_infer(const Workload& w, std::mt19937_64& rng) {
    Prepared p;
    const DType t = w.dtype;
    const std::int64_t C = compressed_tokens(w), per_seq = (C + w.P - 1) / w.P, pages = w.B * per_seq;
    p.buffers.reserve(6);
    auto& q = p.buffers.emplace_back(t, w.B, w.N1, w.Dk);
    auto& k = p.buffers.emplace_back(t, pages, w.P, w.N2 * w.Dk);
    auto& v = p.buffers.emplace_back(t, pages, w.P, w.N2 * w.Dv);
    auto& out = p.buffers.emplace_back(t, w.B, w.N1, w.Dv);
    auto& topk = p.buffers.emplace_back(DType::i32, w.B, w.N2, w.C);
    auto& table = p.buffers.emplace_back(DType::i32, w.B, per_seq, 1);
    q.fill(rng, 1.0);
    k.fill(rng, 1.0);
    v.fill(rng, 1.0);
    std::vector<std::int32_t> order(static_cast<std::size_t>(pages));
    for (std::int64_t i = 0; i < pages; ++i) order[std::size_t(i)] = std::int32_t(i);
    std::shuffle(order.begin(), order.end(), rng);
    std::memcpy(table.bytes.data(), order.data(), order.size() * 4);
    TensorView tv = table.view;
    tv.rank = 2;  // [B, pages per sequence]
    opennsa::CompressAttentionInferParams params;
    params.scale = 1.0 / std::sqrt(double(w.Dk));
    params.head_num = w.N1;
    params.key_value_head_num = w.N2;
    params.select_block_size = w.bs;
    params.select_block_count = w.C;
    params.compress_block_size = w.l;
    params.compress_stride = w.d;
    params.page_block_size = w.P;
    params.cmp_kv_seq_lens = std::vector<std::int64_t>(std::size_t(w.B), C);
    const opennsa::CompressAttentionInferArgs a{q.view, k.view, v.view, {}, tv, {}, out.view, topk.view};
    p.run = [a, params] { opennsa::compress_attention_infer(a, params); };
    p.workspace = opennsa::compress_attention_infer_workspace_bytes(a, params);
    return p;
}

// One decoding step over a paged cache of B sequences of T tokens, bf16 [pages, P, N2, D], pages
// of each sequence in shuffled order. Each call (warm-up included) uses the next of 16 random
// selections (block 0, the last two blocks, distinct random others), and before each call an
// untimed pass reads a buffer of twice the L3 size, so the selected rows come from DRAM, not from
// the cache the previous call or the fill left them in. bytes: the selected K and V rows, the
// queries and the block table the step reads.
Prepared prepare_decode(const Workload& w, std::mt19937_64& rng) {
    Prepared p;
    const DType t = w.dtype;
    const std::int64_t per_seq = (w.T + w.P - 1) / w.P, pages = w.B * per_seq, blocks = (w.T + w.bs - 1) / w.bs;
    constexpr int kSelections = 16;
    p.buffers.reserve(5 + kSelections);
    auto& q = p.buffers.emplace_back(t, w.B, w.N1, w.Dk);
    auto& k = p.buffers.emplace_back(t, pages * w.P, w.N2, w.Dk);
    auto& v = p.buffers.emplace_back(t, pages * w.P, w.N2, w.Dv);
    auto& table = p.buffers.emplace_back(DType::i32, w.B, per_seq, 1);
    auto& out = p.buffers.emplace_back(t, w.B, w.N1, w.Dv);
    q.fill(rng, 1.0);
    for (Buffer* b : {&k, &v}) {  // uniform [-1, 1): a cheap generator, the caches are large
        std::uint64_t x = rng() | 1;
        const std::size_t n = b->bytes.size() / opennsa::dtype_size(t);
        for (std::size_t i = 0; i < n; ++i) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            opennsa::detail::store_from_f32(b->bytes.data() + i * opennsa::dtype_size(t), t,
                                            float(x >> 40) * 0x1p-23f - 1.0f);
        }
    }
    std::vector<std::int32_t> ids(static_cast<std::size_t>(pages));
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = std::int32_t(i);
    std::shuffle(ids.begin(), ids.end(), rng);
    std::memcpy(table.bytes.data(), ids.data(), ids.size() * sizeof(std::int32_t));
    std::vector<opennsa::SelectAttentionInferArgs> args;
    std::vector<double> seen;  // visible keys of each selection
    for (int sel = 0; sel < kSelections; ++sel) {
        auto& topk = p.buffers.emplace_back(DType::i32, w.B, w.N2, w.C);
        auto* idx = reinterpret_cast<std::int32_t*>(topk.bytes.data());
        double keys = 0;
        std::vector<std::int32_t> pool;
        for (std::int64_t r = 0; r < w.B * w.N2; ++r) {
            pool.clear();
            for (std::int64_t x = 1; x + 2 < blocks; ++x) pool.push_back(std::int32_t(x));
            std::vector<std::int32_t> row{0, std::int32_t(blocks - 1), std::int32_t(blocks - 2)};
            for (std::size_t m = 0; std::int64_t(row.size()) < w.C && m < pool.size(); ++m) {
                std::swap(pool[m], pool[std::uniform_int_distribution<std::size_t>(m, pool.size() - 1)(rng)]);
                row.push_back(pool[m]);
            }
            row.resize(std::size_t(w.C), -1);
            for (std::int64_t j = 0; j < w.C; ++j) {
                idx[r * w.C + j] = row[std::size_t(j)];
                if (row[std::size_t(j)] >= 0) keys += double(std::min(w.bs, w.T - row[std::size_t(j)] * w.bs));
            }
        }
        seen.push_back(keys);
        TensorView kv = TensorView::contiguous(k.bytes.data(), t, {pages, w.P, w.N2, w.Dk});
        TensorView vv = TensorView::contiguous(v.bytes.data(), t, {pages, w.P, w.N2, w.Dv});
        args.push_back({TensorView::contiguous(q.bytes.data(), t, {w.B, 1, w.N1, w.Dk}), kv, vv,
                        TensorView::contiguous(topk.bytes.data(), DType::i32, {w.B, 1, w.N2, w.C}),
                        TensorView::contiguous(table.bytes.data(), DType::i32, {w.B, per_seq}), {},
                        TensorView::contiguous(out.bytes.data(), t, {w.B, 1, w.N1, w.Dv})});
    }
    opennsa::SelectAttentionInferParams params;
    params.scale = 1.0 / std::sqrt(double(w.Dk));
    params.head_num = w.N1;
    params.key_value_head_num = w.N2;
    params.select_block_size = w.bs;
    params.select_block_count = w.C;
    params.page_block_size = w.P;
    params.actual_kv_seq_len = std::vector<std::int64_t>(std::size_t(w.B), w.T);
    const double e = double(opennsa::dtype_size(t));
    p.bytes = seen[0] * double(w.Dk + w.Dv) * e + double(w.B * w.N1 * w.Dk) * e + double(pages) * 4;  // about equal for all
    p.workspace = opennsa::select_attention_infer_workspace_bytes(args[0], params);
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    const std::size_t evict = std::min<std::size_t>(std::size_t{1} << 30, std::max<std::size_t>(std::size_t{64} << 20, 2 * std::size_t(l3 > 0 ? l3 : 0)));
    auto flush = std::make_shared<std::vector<std::uint64_t>>(evict / 8, 1);
    auto next = std::make_shared<int>(0);
    p.before = [flush] {
        std::uint64_t s = 0;
        for (std::uint64_t x : *flush) s += x;
        static std::atomic<std::uint64_t> sink{0};
        sink.store(s, std::memory_order_relaxed);
    };
    p.run = [args, params, next] { opennsa::select_attention_infer(args[std::size_t((*next)++ % kSelections)], params); };
    return p;
}

// One decoding step reads so little (0.8 MB at B = 16) that it would run from the caches if timed
// alone. A timed run is `sets` steps, each on its own raw cache and compressed cache (the layers
// of a model), together reading twice the last-level cache (at least 64 MiB, at most 1 GiB), so
// every step finds its rows in DRAM, as a layer of a real model does; the step latency is the
// run's time / sets.
std::int64_t compress_infer_sets(const Workload& w) {
    const double per_step = double(w.B) * double(w.l) * double(w.N2) * double(w.Dk) * double(opennsa::dtype_size(w.dtype));
    double footprint = 64.0 * (1 << 20);
#if defined(_SC_LEVEL3_CACHE_SIZE)
    footprint = std::min(std::max(footprint, 2.0 * double(sysconf(_SC_LEVEL3_CACHE_SIZE))), double(1 << 30));
#endif
    return std::max<std::int64_t>(1, std::int64_t(std::ceil(footprint / per_step)));
}

// The raw caches of all sets share one arena (huge pages asked for, as a server's preallocated KV
// cache pool has them): only the rows the windows read are stored, densely. Batch b's window lies
// in page b of its set, and the view's page stride is l rows, so the P - l rows of a page that no
// window reads overlap other pages' windows (the operator never reads them; inputs may overlap).
// The block table points every other entry at page 0.
Prepared prepare_compress_infer(const Workload& w, std::mt19937_64& rng) {
    struct Arena {
        unsigned char* data = nullptr;
        explicit Arena(std::size_t bytes) {
            const std::size_t huge = std::size_t{2} << 20;
            data = static_cast<unsigned char*>(std::aligned_alloc(huge, (bytes + huge - 1) / huge * huge));
            if (data == nullptr) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
            madvise(data, (bytes + huge - 1) / huge * huge, MADV_HUGEPAGE);
#endif
        }
        ~Arena() { std::free(data); }
        Arena(const Arena&) = delete;
        Arena& operator=(const Arena&) = delete;
    };
    struct Sets {
        std::unique_ptr<Arena> raw, caches;
        std::vector<opennsa::CompressWithCacheArgs> args;
        opennsa::CompressWithCacheParams params;
    };
    auto sets = std::make_shared<Sets>();
    Prepared p;
    const DType t = w.dtype;
    const std::int64_t e = std::int64_t(opennsa::dtype_size(t)), row = w.N2 * w.Dk;
    const std::int64_t L = w.T, page = (L - w.l) / w.P, first_row = (L - w.l) % w.P, cols = (L + w.P - 1) / w.P;
    const std::int64_t count = compress_infer_sets(w), window = w.l * row;  // elements of one window
    p.buffers.reserve(3);
    auto& weight = p.buffers.emplace_back(t, w.l, w.N2, 1);
    weight.fill(rng, 1.0 / double(w.l));
    auto& table = p.buffers.emplace_back(DType::i32, w.B, cols, 1);
    auto& slots = p.buffers.emplace_back(DType::i32, w.B, 1, 1);
    auto* tab = reinterpret_cast<std::int32_t*>(table.bytes.data());
    auto* slot = reinterpret_cast<std::int32_t*>(slots.bytes.data());
    for (std::int64_t b = 0; b < w.B; ++b) {
        tab[b * cols + page] = std::int32_t(b);
        slot[b] = std::int32_t(b);
    }
    TensorView wv = weight.view, tv = table.view, sv = slots.view;
    wv.rank = 2, tv.rank = 2, sv.rank = 1;
    sets->params.block_size = w.l;
    sets->params.stride = w.d;
    sets->params.page_size = w.P;
    sets->params.seq_lens.assign(std::size_t(w.B), L);
    // The windows of every set, back to back, with room before the first (rows of its page ahead
    // of the window) and after the last (rows behind it).
    const std::int64_t dense = count * w.B * window, before = first_row * row, after = (w.P - first_row - w.l) * row;
    sets->raw = std::make_unique<Arena>(std::size_t((before + dense + after) * e));
    sets->caches = std::make_unique<Arena>(std::size_t(count * w.B * row * e));
    std::normal_distribution<float> nd(0.0f, 1.0f);
    unsigned char* windows = sets->raw->data + before * e;
    for (std::int64_t i = 0; i < dense; ++i) opennsa::detail::store_from_f32(windows + i * e, t, nd(rng));
    std::memset(sets->caches->data, 0, std::size_t(count * w.B * row * e));
    for (std::int64_t s = 0; s < count; ++s) {
        unsigned char* base = windows + (s * w.B * window - before) * e;  // page 0, row 0 of this set
        sets->args.push_back({TensorView::strided(base, t, {w.B, w.P, w.N2, w.Dk}, {window, row, w.Dk, 1}), wv, sv, tv,
                              TensorView::contiguous(sets->caches->data + s * w.B * row * e, t, {w.B, w.N2, w.Dk})});
    }
    p.run = [sets] {
        for (const auto& a : sets->args) opennsa::compress_with_cache(a, sets->params);
    };
    p.workspace = opennsa::compress_with_cache_workspace_bytes(sets->args.front(), sets->params);
    return p;
}

// Times workload w at each thread count of `thread_counts`, reps interleaved (rep 1 at every count,
// then rep 2, ...) so a noisy stretch of the machine hits every count alike; one warm-up each.
std::vector<Result> run_workload(const Workload& w, const std::vector<int>& thread_counts, int reps, bool quiet) {
    std::mt19937_64 rng(12345);
    Prepared p = is_cattn_infer(w)          ? prepare_compress_attention_infer(w, rng)
                 : is_compress(w)           ? prepare_compress(w, rng)
                 : is_compress_infer(w)     ? prepare_compress_infer(w, rng)
                 : is_compress_attention(w) ? prepare_compress_attention(w, thread_counts.back(), rng)
                 : is_sel_infer(w)          ? prepare_decode(w, rng)
                                            : prepare_select(w, thread_counts.back(), rng);
    std::vector<std::vector<double>> times(thread_counts.size());
    for (int rep = -1; rep < reps; ++rep)  // rep -1 warms up
        for (std::size_t c = 0; c < thread_counts.size(); ++c) {
            opennsa::set_num_threads(thread_counts[c]);
            if (p.before) p.before();
            const auto t0 = Clock::now();
            p.run();
            const double s = std::chrono::duration<double>(Clock::now() - t0).count();
            if (rep >= 0) times[c].push_back(s);
            if (!quiet)
                std::fprintf(stderr, "[bench] %s %s %s threads=%d %s %d/%d: %.3f s\n", w.name.c_str(), w.op.c_str(),
                             opennsa::dtype_name(w.dtype), thread_counts[c], rep < 0 ? "warm-up" : "rep",
                             rep < 0 ? 0 : rep + 1, reps, s);
        }
    std::vector<Result> results;
    for (std::vector<double>& ts : times) {
        std::sort(ts.begin(), ts.end());
        results.push_back({ts[ts.size() / 2], ts.front(), p.workspace, p.bytes});
    }
    return results;
}

// The integer shape flags, as members of Workload.
std::int64_t Workload::*shape_field(const std::string& flag) {
    if (flag == "--T") return &Workload::T;
    if (flag == "--N1") return &Workload::N1;
    if (flag == "--N2") return &Workload::N2;
    if (flag == "--Dk") return &Workload::Dk;
    if (flag == "--Dv") return &Workload::Dv;
    if (flag == "--bs") return &Workload::bs;
    if (flag == "--C") return &Workload::C;
    if (flag == "--l") return &Workload::l;
    if (flag == "--d") return &Workload::d;
    if (flag == "--B") return &Workload::B;
    if (flag == "--P") return &Workload::P;
    return nullptr;
}

DType parse_dtype(const std::string& s) {
    if (s == "bf16") return DType::bf16;
    if (s == "fp16" || s == "f16") return DType::f16;
    if (s == "fp32" || s == "f32") return DType::f32;
    if (s == "fp64" || s == "f64") return DType::f64;
    std::fprintf(stderr, "unknown dtype %s\n", s.c_str());
    std::exit(2);
}

void usage() {
    std::fprintf(stderr,
                 "usage: opennsa-bench [--preset NAME|all] [--op forward|backward] [--dtype bf16|fp16|fp32|fp64]\n"
                 "       [--T n] [--N1 n] [--N2 n] [--Dk n] [--Dv n] [--bs n] [--C n] [--causal 0|1]\n"
                 "       [--l n] [--d n] [--B n] [--P n] [--threads n] [--reps n] [--peak] [--bandwidth] [--json] [--quiet] [--scaling]\n"
                 "ops: forward, backward (selected attention), compress, compress-grad, compress-attention,\n"
                 "     compress-attention-grad (bs and C are l' and k there; built-in causal rule),\n"
                 "     compress-attention-infer (one decode step of --B sequences of T tokens, page size --P)\n"
                 "     select-attention-infer (one decoding step: --B sequences of --T tokens, pages of --P)\n"
                 "     compress-infer (one decoding step: B sequences of T tokens, pages of P, N2 heads of Dk)\n"
                 "--scaling times each workload at 1 thread and at --threads (reps interleaved) and prints the speed-up\n"
                 "shape flags change every preset named (e.g. --preset bwd-bf16-n64 --T 4096), else describe one workload\n"
                 "presets:");
    for (const Preset& p : kPresets) std::fprintf(stderr, " %s", p.name);
    std::fprintf(stderr, "\n");
}

}  // namespace

int main(int argc, char** argv) {
    Workload custom;
    std::vector<Workload> work;
    int threads = int(std::max(1u, std::thread::hardware_concurrency()));
    int reps = 5;
    bool json = false, peak = false, quiet = false, scaling = false, bandwidth = false;
    // Shape flags: applied to every preset named, or to one custom workload when none is.
    std::vector<std::function<void(Workload&)>> set;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                usage();
                std::exit(2);
            }
            return argv[++i];
        };
        auto num = [&] { return std::stoll(next()); };
        if (a == "--preset") {
            const std::string n = next();
            bool found = false;
            for (const Preset& p : kPresets)
                if (n == "all" || n == p.name) {
                    Workload w;
                    w.name = p.name;
                    w.op = p.op;
                    w.dtype = p.dtype;
                    w.T = p.T;
                    w.N1 = p.N1;
                    w.N2 = p.N2;
                    w.B = p.B;
                    work.push_back(w);
                    found = true;
                }
            if (!found) {
                usage();
                return 2;
            }
        } else if (a == "--op") {
            const std::string v = next();
            set.push_back([v](Workload& w) { w.op = v; });
        } else if (a == "--dtype") {
            const DType v = parse_dtype(next());
            set.push_back([v](Workload& w) { w.dtype = v; });
        } else if (a == "--causal") {
            const bool v = num() != 0;
            set.push_back([v](Workload& w) { w.causal = v; });
        } else if (auto field = shape_field(a)) {
            const std::int64_t v = num();
            set.push_back([field, v](Workload& w) { w.*field = v; });
        }
        else if (a == "--threads") threads = int(num());
        else if (a == "--reps") reps = std::max(1, int(num()));
        else if (a == "--json") json = true;
        else if (a == "--peak") peak = true;
        else if (a == "--bandwidth") bandwidth = true;
        else if (a == "--quiet") quiet = true;
        else if (a == "--scaling") scaling = true;
        else {
            usage();
            return a == "--help" || a == "-h" ? 0 : 2;
        }
    }
    if (work.empty() && (!set.empty() || !(peak || bandwidth))) work.push_back(custom);
    for (Workload& w : work)
        for (const auto& f : set) f(w);

    // The peaks are measured in the same run as the workloads they are compared with: the fp32 FMA
    // peak of the widest vectors (ymm, or zmm with AVX-512F) and, where AVX512_BF16 exists, the
    // bf16 dot-product peak, which is the matching one for bf16 workloads.
    struct Peak {
        double one = 0, all = 0, at_threads = 0;  // 1 thread, every hardware thread, --threads
    };
    const int hw = int(std::max(1u, std::thread::hardware_concurrency()));
    auto measure = [&](double (*fn)(int)) {
        Peak pk;
        pk.one = fn(1);
        pk.all = hw == 1 ? pk.one : fn(hw);
        pk.at_threads = threads == 1 ? pk.one : threads == hw ? pk.all : fn(threads);
        return pk;
    };
    const Peak fp32 = measure(fp32_peak);
    const Peak bf16 = has_bf16_dot() ? measure(bf16_peak) : Peak{};
    const char* vector_name = has_avx512() ? "zmm" : "ymm";
    const char* kernel = std::getenv("OPENNSA_KERNEL");
    if (peak) {
        if (json) {
            std::printf("{\"peak\":\"fp32_fma\",\"vectors\":\"%s\",\"threads_1_gflops\":%.1f,\"threads_%d_gflops\":%.1f}\n",
                        vector_name, fp32.one, hw, fp32.all);
            if (bf16.one > 0)
                std::printf("{\"peak\":\"bf16_dot\",\"threads_1_gflops\":%.1f,\"threads_%d_gflops\":%.1f}\n", bf16.one,
                            hw, bf16.all);
            else
                std::printf("{\"peak\":\"bf16_dot\",\"unavailable\":\"no AVX512_BF16: bf16 workloads use the fp32 FMA peak\"}\n");
        } else {
            std::printf("fp32 FMA peak (%s, 12 chains): 1 thread %.1f GFLOP/s, %d threads %.1f GFLOP/s\n", vector_name,
                        fp32.one, hw, fp32.all);
            if (bf16.one > 0)
                std::printf("bf16 dot peak (vdpbf16ps zmm, 12 chains): 1 thread %.1f GFLOP/s, %d threads %.1f GFLOP/s\n",
                            bf16.one, hw, bf16.all);
            else
                std::printf("bf16 dot peak: unavailable (no AVX512_BF16); the fp32 FMA peak is the matching one\n");
        }
    }
    bool any_compress = bandwidth;
    for (const Workload& w : work) {
        if (!is_select(w) && !is_compress(w) && !is_compress_attention(w) && !is_decode(w) &&
            !is_compress_infer(w)) {
            usage();
            return 2;
        }
        if (is_compress_infer(w) &&
            (w.T < w.l || (w.T - w.l) % w.d != 0 || w.B < 1 || w.P < 1 || (w.T - w.l) % w.P + w.l > w.P)) {
            std::fprintf(stderr, "compress-infer: T = %lld must complete a window (T >= l, (T - l) %% d == 0) that lies "
                         "in one page ((T - l) %% P + l <= P); B, P >= 1\n", (long long)w.T);
            return 2;
        }
        any_compress = any_compress || is_compress(w) || is_decode(w) || is_compress_infer(w);
    }
    // The streaming bandwidth, measured in the same run as the memory-bound workloads it is
    // compared with (at 1 thread and at --threads).
    Bandwidth bw1, bwn;
    if (any_compress) {
        bw1 = stream_bandwidth(1);
        bwn = threads == 1 ? bw1 : stream_bandwidth(threads);
        if (json)
            std::printf("{\"bandwidth\":\"stream\",\"threads_1_read_gbs\":%.1f,\"threads_1_copy_gbs\":%.1f,"
                        "\"threads_%d_read_gbs\":%.1f,\"threads_%d_copy_gbs\":%.1f}\n",
                        bw1.read_gbs, bw1.copy_gbs, threads, bwn.read_gbs, threads, bwn.copy_gbs);
        else
            std::printf("streaming bandwidth (256 MiB per thread): 1 thread read %.1f GB/s, copy %.1f GB/s; "
                        "%d threads read %.1f GB/s, copy %.1f GB/s\n",
                        bw1.read_gbs, bw1.copy_gbs, threads, bwn.read_gbs, bwn.copy_gbs);
    }
    // --scaling: each workload at 1 thread and at --threads, reps interleaved, plus the speed-up.
    std::vector<int> counts{threads};
    if (scaling && threads > 1) counts.insert(counts.begin(), 1);
    for (const Workload& w : work) {
        const std::vector<Result> results = run_workload(w, counts, reps, quiet);
        for (std::size_t c = 0; c < counts.size(); ++c) {
            const Result& r = results[c];
            const int n = counts[c];
            if (is_decode(w)) {
                if (is_cattn_infer(w)) {
                    // A decode step: the bytes it must read per second against the streaming read
                    // bandwidth, and its FLOPs against the fp32 FMA peak, both measured in this run.
                    const double gbs = compress_attention_infer_bytes(w) / r.median * 1e-9, gf = flops(w) / r.median * 1e-9;
                    const double ref = (n == 1 ? bw1 : bwn).read_gbs, pk = n == 1 ? fp32.one : fp32.at_threads;
                    if (json)
                        std::printf("{\"name\":\"%s\",\"op\":\"%s\",\"dtype\":\"%s\",\"shape\":{\"B\":%lld,\"T\":%lld,"
                                    "\"compressed_T\":%lld,\"N1\":%lld,\"N2\":%lld,\"Dk\":%lld,\"Dv\":%lld,\"l\":%lld,"
                                    "\"d\":%lld,\"sel\":%lld,\"k\":%lld,\"P\":%lld},\"threads\":%d,\"kernel\":\"%s\","
                                    "\"reps\":%d,\"seconds\":%.6f,\"seconds_min\":%.6f,\"bytes\":%.0f,\"gbs\":%.2f,"
                                    "\"read_bandwidth_gbs\":%.1f,\"fraction_of_bandwidth\":%.4f,\"gflops\":%.2f,"
                                    "\"peak_gflops\":%.1f,\"fraction_of_peak\":%.4f,\"workspace_bytes\":%lld}\n",
                                    w.name.c_str(), w.op.c_str(), opennsa::dtype_name(w.dtype), (long long)w.B,
                                    (long long)w.T, (long long)compressed_tokens(w), (long long)w.N1, (long long)w.N2,
                                    (long long)w.Dk, (long long)w.Dv, (long long)w.l, (long long)w.d, (long long)w.bs,
                                    (long long)w.C, (long long)w.P, n, kernel ? kernel : "auto", reps, r.median, r.min,
                                    compress_attention_infer_bytes(w), gbs, ref, ref > 0 ? gbs / ref : 0.0, gf, pk, pk > 0 ? gf / pk : 0.0,
                                    (long long)r.workspace);
                    else
                        std::printf("%-20s %-4s B=%lld T=%lld (C=%lld) N1=%lld N2=%lld Dk=%lld Dv=%lld P=%lld threads=%d: "
                                    "step %.3f ms (min %.3f), %.1f GB/s = %.1f%% of %.1f GB/s read bandwidth, "
                                    "%.1f GFLOP/s = %.1f%% of %.1f GFLOP/s fp32 FMA peak, workspace %.1f MiB\n",
                                    w.name.c_str(), opennsa::dtype_name(w.dtype), (long long)w.B, (long long)w.T,
                                    (long long)compressed_tokens(w), (long long)w.N1, (long long)w.N2, (long long)w.Dk,
                                    (long long)w.Dv, (long long)w.P, n, 1e3 * r.median, 1e3 * r.min, gbs,
                                    ref > 0 ? 100 * gbs / ref : 0.0, ref, gf, pk > 0 ? 100 * gf / pk : 0.0, pk,
                                    double(r.workspace) / (1 << 20));
                    continue;
                }
                // Memory-bound: the bytes one step must read per second against the read bandwidth.
                const double gbs = r.bytes / r.median * 1e-9;
                const double ref = (n == 1 ? bw1 : bwn).read_gbs;
                if (json)
                    std::printf("{\"name\":\"%s\",\"op\":\"%s\",\"dtype\":\"%s\",\"shape\":{\"B\":%lld,\"L\":%lld,"
                                "\"N1\":%lld,\"N2\":%lld,\"Dk\":%lld,\"Dv\":%lld,\"sel\":%lld,\"k\":%lld,\"P\":%lld},"
                                "\"threads\":%d,\"kernel\":\"%s\",\"reps\":%d,\"seconds\":%.6f,\"seconds_min\":%.6f,"
                                "\"bytes\":%.0f,\"gbs\":%.2f,\"read_bandwidth_gbs\":%.1f,\"fraction_of_bandwidth\":%.4f,"
                                "\"workspace_bytes\":%lld}\n",
                                w.name.c_str(), w.op.c_str(), opennsa::dtype_name(w.dtype), (long long)w.B, (long long)w.T,
                                (long long)w.N1, (long long)w.N2, (long long)w.Dk, (long long)w.Dv, (long long)w.bs,
                                (long long)w.C, (long long)w.P, n, kernel ? kernel : "auto", reps, r.median, r.min, r.bytes,
                                gbs, ref, ref > 0 ? gbs / ref : 0.0, (long long)r.workspace);
                else
                    std::printf("%-20s B=%lld L=%lld N1=%lld N2=%lld Dk=%lld Dv=%lld l'=%lld k=%lld P=%lld %s threads=%d: "
                                "step %.1f us median (min %.1f), %.1f MB read, %.1f GB/s, %.1f%% of %.1f GB/s read "
                                "bandwidth, workspace %.1f KiB\n",
                                w.name.c_str(), (long long)w.B, (long long)w.T, (long long)w.N1, (long long)w.N2,
                                (long long)w.Dk, (long long)w.Dv, (long long)w.bs, (long long)w.C, (long long)w.P,
                                opennsa::dtype_name(w.dtype), n, r.median * 1e6, r.min * 1e6, r.bytes * 1e-6, gbs,
                                ref > 0 ? 100 * gbs / ref : 0.0, ref, double(r.workspace) / 1024);
                continue;
            }
            if (is_compress_infer(w)) {
                // Latency of one step (a run is `sets` steps on distinct caches) and the bytes it
                // must move per second against the streaming read bandwidth (the step reads l rows
                // per sequence and writes one).
                const double sets = double(compress_infer_sets(w)), step = r.median / sets;
                const double gbs = compress_infer_bytes(w) / step * 1e-9;
                const double ref = (n == 1 ? bw1 : bwn).read_gbs;
                if (json)
                    std::printf("{\"name\":\"%s\",\"op\":\"%s\",\"dtype\":\"%s\",\"shape\":{\"B\":%lld,\"L\":%lld,"
                                "\"N\":%lld,\"D\":%lld,\"l\":%lld,\"d\":%lld,\"P\":%lld},\"threads\":%d,\"kernel\":\"%s\","
                                "\"reps\":%d,\"steps_per_rep\":%.0f,\"step_us\":%.2f,\"step_us_min\":%.2f,\"bytes\":%.0f,"
                                "\"gbs\":%.2f,\"read_bandwidth_gbs\":%.1f,\"fraction_of_bandwidth\":%.4f}\n",
                                w.name.c_str(), w.op.c_str(), opennsa::dtype_name(w.dtype), (long long)w.B,
                                (long long)w.T, (long long)w.N2, (long long)w.Dk, (long long)w.l, (long long)w.d,
                                (long long)w.P, n, kernel ? kernel : "auto", reps, sets, step * 1e6,
                                r.min / sets * 1e6, compress_infer_bytes(w), gbs, ref, ref > 0 ? gbs / ref : 0.0);
                else
                    std::printf("%-18s %-14s %-4s B=%lld L=%lld N=%lld D=%lld l=%lld d=%lld P=%lld threads=%d: "
                                "step %.2f us (min %.2f; %.0f steps per rep), %.0f KB, %.1f GB/s, %.1f%% of %.1f GB/s "
                                "read bandwidth\n",
                                w.name.c_str(), w.op.c_str(), opennsa::dtype_name(w.dtype), (long long)w.B,
                                (long long)w.T, (long long)w.N2, (long long)w.Dk, (long long)w.l, (long long)w.d,
                                (long long)w.P, n, step * 1e6, r.min / sets * 1e6, sets,
                                compress_infer_bytes(w) / 1e3, gbs, ref > 0 ? 100 * gbs / ref : 0.0, ref);
                continue;
            }
            if (is_compress(w)) {
                // Memory-bound: bytes it must move per second against the copy bandwidth (read +
                // written bytes per second, the same accounting).
                const double gbs = compress_bytes(w) / r.median * 1e-9;
                const double ref = (n == 1 ? bw1 : bwn).copy_gbs;
                if (json)
                    std::printf("{\"name\":\"%s\",\"op\":\"%s\",\"dtype\":\"%s\",\"shape\":{\"T\":%lld,\"N\":%lld,"
                                "\"D\":%lld,\"l\":%lld,\"d\":%lld},\"threads\":%d,\"kernel\":\"%s\",\"reps\":%d,"
                                "\"seconds\":%.6f,\"seconds_min\":%.6f,\"bytes\":%.0f,\"gbs\":%.2f,"
                                "\"copy_bandwidth_gbs\":%.1f,\"fraction_of_bandwidth\":%.4f,\"workspace_bytes\":%lld}\n",
                                w.name.c_str(), w.op.c_str(), opennsa::dtype_name(w.dtype), (long long)w.T,
                                (long long)w.N2, (long long)w.Dk, (long long)w.l, (long long)w.d, n,
                                kernel ? kernel : "auto", reps, r.median, r.min, compress_bytes(w), gbs, ref,
                                ref > 0 ? gbs / ref : 0.0, (long long)r.workspace);
                else
                    std::printf("%-18s %-13s %-4s T=%lld N=%lld D=%lld l=%lld d=%lld threads=%d: median %.4f s "
                                "(min %.4f), %.1f GB/s, %.1f%% of %.1f GB/s copy bandwidth, workspace %.1f MiB\n",
                                w.name.c_str(), w.op.c_str(), opennsa::dtype_name(w.dtype), (long long)w.T,
                                (long long)w.N2, (long long)w.Dk, (long long)w.l, (long long)w.d, n, r.median, r.min,
                                gbs, ref > 0 ? 100 * gbs / ref : 0.0, ref, double(r.workspace) / (1 << 20));
                continue;
            }
            // The targets are fractions of the fp32 FMA peak (the kernels compute in fp32 FMAs); for
            // bf16 on a CPU with vdpbf16ps, where the selected attention's matmuls use it, the
            // fraction of that (higher) peak is reported too.
            const char* peak_kind = "fp32_fma";
            const double pk = n == 1 ? fp32.one : fp32.at_threads;
            const double pk_bf16 = w.dtype == DType::bf16 ? (n == 1 ? bf16.one : bf16.at_threads) : 0.0;
            const double gf = flops(w) / r.median * 1e-9;
            if (json) {
                std::printf("{\"name\":\"%s\",\"op\":\"%s\",\"dtype\":\"%s\",\"shape\":{\"T1\":%lld,\"T2\":%lld,\"N1\":%lld,"
                            "\"N2\":%lld,\"Dk\":%lld,\"Dv\":%lld,\"bs\":%lld,\"C\":%lld,\"causal\":%s},\"threads\":%d,"
                            "\"kernel\":\"%s\",\"reps\":%d,\"seconds\":%.6f,\"seconds_min\":%.6f,\"gflops\":%.2f,"
                            "\"peak_gflops\":%.1f,\"peak_kind\":\"%s\",\"fraction_of_peak\":%.4f,\"peak_rss_bytes\":%lld,"
                            "\"workspace_bytes\":%lld,\"fp32_dkdv_bytes\":%lld,\"fraction_of_bf16_dot_peak\":%.4f,"
                            "\"l\":%lld,\"d\":%lld,\"compressed_T\":%lld}\n",
                            w.name.c_str(), w.op.c_str(), opennsa::dtype_name(w.dtype), (long long)w.T, (long long)w.T,
                            (long long)w.N1, (long long)w.N2, (long long)w.Dk, (long long)w.Dv, (long long)w.bs,
                            (long long)w.C, w.causal ? "true" : "false", n, kernel ? kernel : "auto", reps, r.median,
                            r.min, gf, pk, peak_kind, pk > 0 ? gf / pk : 0.0, (long long)peak_rss_bytes(), (long long)r.workspace,
                            (long long)(w.T * w.N2 * (w.Dk + w.Dv) * 4), pk_bf16 > 0 ? gf / pk_bf16 : 0.0,
                            (long long)w.l, (long long)w.d, (long long)compressed_tokens(w));
            } else {
                char bf16_share[96] = "";
                if (pk_bf16 > 0)
                    std::snprintf(bf16_share, sizeof bf16_share, " (%.1f%% of %.1f GFLOP/s bf16 dot peak)",
                                  100 * gf / pk_bf16, pk_bf16);
                std::printf("%-14s %-8s %-4s T=%lld N1=%lld N2=%lld Dk=%lld Dv=%lld bs=%lld C=%lld %s threads=%d: "
                            "median %.4f s (min %.4f), %.1f GFLOP/s, %.1f%% of %.1f GFLOP/s %s peak%s, "
                            "peak RSS %.0f MiB, workspace %.1f MiB\n",
                            w.name.c_str(), w.op.c_str(), opennsa::dtype_name(w.dtype), (long long)w.T, (long long)w.N1,
                            (long long)w.N2, (long long)w.Dk, (long long)w.Dv, (long long)w.bs, (long long)w.C,
                            w.causal ? "causal" : "full", n, r.median, r.min, gf, pk > 0 ? 100 * gf / pk : 0.0, pk, peak_kind,
                            bf16_share, double(peak_rss_bytes()) / (1 << 20), double(r.workspace) / (1 << 20));
            }
        }
        if (counts.size() == 2) {
            const double speedup = results[0].median / results[1].median;
            if (json)
                std::printf("{\"scaling\":\"%s\",\"threads\":[1,%d],\"seconds\":[%.6f,%.6f],\"speedup\":%.3f}\n",
                            w.name.c_str(), threads, results[0].median, results[1].median, speedup);
            else
                std::printf("%-14s speed-up 1 -> %d threads: %.2fx (medians %.4f s -> %.4f s)\n", w.name.c_str(),
                            threads, speedup, results[0].median, results[1].median);
        }
        std::fflush(stdout);
    }
    return 0;
}
