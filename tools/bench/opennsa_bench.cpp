// opennsa-bench: times the forward / backward on NSA-like selections and reports GFLOP/s against
// this machine's measured fp32 FMA peak (DESIGN.md's FLOP convention).
//
//   opennsa-bench --preset bwd-bf16-n64 --json
//   opennsa-bench --op backward --dtype bf16 --T 4096 --N1 16 --N2 1 --threads 2 --reps 5
//   opennsa-bench --peak
//   opennsa-bench --preset bwd-bf16-n64 --threads 2 --scaling   # 1 vs 2 threads, interleaved
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
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

struct Workload {
    std::string name = "custom";
    std::string op = "backward";
    DType dtype = DType::bf16;
    std::int64_t T = 8192, N1 = 64, N2 = 4, Dk = 192, Dv = 128, bs = 64, C = 16;
    bool causal = true;
};

struct Preset {
    const char* name;
    const char* op;
    DType dtype;
    std::int64_t T, N1, N2;
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
};

double flops(const Workload& w) {
    const double base = 2.0 * double(w.T) * double(w.N1) * double(w.C) * double(w.bs);
    return w.op == "forward" ? base * double(w.Dk + w.Dv) : base * double(3 * w.Dk + 2 * w.Dv);
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
};

// Times workload w at each thread count of `thread_counts`, reps interleaved (rep 1 at every count,
// then rep 2, ...) so a noisy stretch of the machine hits every count alike; one warm-up each.
std::vector<Result> run_workload(const Workload& w, const std::vector<int>& thread_counts, int reps, bool quiet) {
    std::mt19937_64 rng(12345);
    const DType t = w.dtype;
    Buffer q(t, w.T, w.N1, w.Dk), k(t, w.T, w.N2, w.Dk), v(t, w.T, w.N2, w.Dv), topk(DType::i32, w.T, w.N2, w.C);
    Buffer out(t, w.T, w.N1, w.Dv), smax(DType::f32, w.T, w.N1, 8), ssum(DType::f32, w.T, w.N1, 8);
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

    const bool fwd = w.op == "forward";
    std::vector<Buffer> grads;
    opennsa::BackwardArgs ba{};
    if (!fwd) {
        opennsa::set_num_threads(thread_counts.back());
        opennsa::forward(fa, params);  // out and statistics for the backward
        grads.emplace_back(t, w.T, w.N1, w.Dv);  // dO
        grads.back().fill(rng, 1.0);
        grads.emplace_back(t, w.T, w.N1, w.Dk);
        grads.emplace_back(t, w.T, w.N2, w.Dk);
        grads.emplace_back(t, w.T, w.N2, w.Dv);
        ba = {q.view, k.view, v.view, out.view, grads[0].view, smax.view, ssum.view, topk.view, {},
              grads[1].view, grads[2].view, grads[3].view};
    }
    std::vector<std::vector<double>> times(thread_counts.size());
    for (int rep = -1; rep < reps; ++rep)  // rep -1 warms up
        for (std::size_t c = 0; c < thread_counts.size(); ++c) {
            opennsa::set_num_threads(thread_counts[c]);
            const auto t0 = Clock::now();
            if (fwd)
                opennsa::forward(fa, params);
            else
                opennsa::backward(ba, params);
            const double s = std::chrono::duration<double>(Clock::now() - t0).count();
            if (rep >= 0) times[c].push_back(s);
            if (!quiet)
                std::fprintf(stderr, "[bench] %s %s %s threads=%d %s %d/%d: %.3f s\n", w.name.c_str(), w.op.c_str(),
                             opennsa::dtype_name(t), thread_counts[c], rep < 0 ? "warm-up" : "rep", rep < 0 ? 0 : rep + 1,
                             reps, s);
        }
    const std::size_t workspace =
        fwd ? opennsa::forward_workspace_bytes(fa, params) : opennsa::backward_workspace_bytes(ba, params);
    std::vector<Result> results;
    for (std::vector<double>& ts : times) {
        std::sort(ts.begin(), ts.end());
        results.push_back({ts[ts.size() / 2], ts.front(), workspace});
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
                 "       [--threads n] [--reps n] [--peak] [--json] [--quiet] [--scaling]\n"
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
    bool json = false, peak = false, quiet = false, scaling = false;
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
        else if (a == "--quiet") quiet = true;
        else if (a == "--scaling") scaling = true;
        else {
            usage();
            return a == "--help" || a == "-h" ? 0 : 2;
        }
    }
    if (work.empty() && (!set.empty() || !peak)) work.push_back(custom);
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
    for (const Workload& w : work) {
        if (w.op != "forward" && w.op != "backward") {
            usage();
            return 2;
        }
    }
    // --scaling: each workload at 1 thread and at --threads, reps interleaved, plus the speed-up.
    std::vector<int> counts{threads};
    if (scaling && threads > 1) counts.insert(counts.begin(), 1);
    for (const Workload& w : work) {
        const std::vector<Result> results = run_workload(w, counts, reps, quiet);
        for (std::size_t c = 0; c < counts.size(); ++c) {
            const Result& r = results[c];
            const int n = counts[c];
            const bool bf16_dot = w.dtype == DType::bf16 && bf16.one > 0;
            const Peak& match = bf16_dot ? bf16 : fp32;
            const char* peak_kind = bf16_dot ? "bf16_dot" : "fp32_fma";
            const double pk = n == 1 ? match.one : match.at_threads;
            const double gf = flops(w) / r.median * 1e-9;
            if (json) {
                std::printf("{\"name\":\"%s\",\"op\":\"%s\",\"dtype\":\"%s\",\"shape\":{\"T1\":%lld,\"T2\":%lld,\"N1\":%lld,"
                            "\"N2\":%lld,\"Dk\":%lld,\"Dv\":%lld,\"bs\":%lld,\"C\":%lld,\"causal\":%s},\"threads\":%d,"
                            "\"kernel\":\"%s\",\"reps\":%d,\"seconds\":%.6f,\"seconds_min\":%.6f,\"gflops\":%.2f,"
                            "\"peak_gflops\":%.1f,\"peak_kind\":\"%s\",\"fraction_of_peak\":%.4f,\"peak_rss_bytes\":%lld,"
                            "\"workspace_bytes\":%lld,\"fp32_dkdv_bytes\":%lld}\n",
                            w.name.c_str(), w.op.c_str(), opennsa::dtype_name(w.dtype), (long long)w.T, (long long)w.T,
                            (long long)w.N1, (long long)w.N2, (long long)w.Dk, (long long)w.Dv, (long long)w.bs,
                            (long long)w.C, w.causal ? "true" : "false", n, kernel ? kernel : "auto", reps, r.median,
                            r.min, gf, pk, peak_kind, pk > 0 ? gf / pk : 0.0, (long long)peak_rss_bytes(), (long long)r.workspace,
                            (long long)(w.T * w.N2 * (w.Dk + w.Dv) * 4));
            } else {
                std::printf("%-14s %-8s %-4s T=%lld N1=%lld N2=%lld Dk=%lld Dv=%lld bs=%lld C=%lld %s threads=%d: "
                            "median %.4f s (min %.4f), %.1f GFLOP/s, %.1f%% of %.1f GFLOP/s %s peak, "
                            "peak RSS %.0f MiB, workspace %.1f MiB\n",
                            w.name.c_str(), w.op.c_str(), opennsa::dtype_name(w.dtype), (long long)w.T, (long long)w.N1,
                            (long long)w.N2, (long long)w.Dk, (long long)w.Dv, (long long)w.bs, (long long)w.C,
                            w.causal ? "causal" : "full", n, r.median, r.min, gf, pk > 0 ? 100 * gf / pk : 0.0, pk, peak_kind,
                            double(peak_rss_bytes()) / (1 << 20), double(r.workspace) / (1 << 20));
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
