// opennsa-demo: one forward and one backward through the native API on an NSA-shaped problem,
// checked against the float64 reference, with timing. Exits non-zero if a check fails.
//
//   opennsa-demo [--T 1024] [--N1 16] [--N2 1] [--Dk 192] [--Dv 128] [--bs 64] [--C 16]
//                [--dtype bf16|fp16|fp32] [--no-causal] [--threads N]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "core/convert.hpp"
#include "ops/select_attention/problem.hpp"
#include "ops/select_attention/reference.hpp"

namespace sel = opennsa::detail::select_attention;
#include "opennsa/opennsa.hpp"

namespace {

using opennsa::DType;
using opennsa::TensorView;

struct Options {
    std::int64_t T = 1024, N1 = 16, N2 = 1, Dk = 192, Dv = 128, bs = 64, C = 16;
    DType dtype = DType::bf16;
    bool causal = true;
    int threads = 0;
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "opennsa-demo: %s\nusage: opennsa-demo [--T n] [--N1 n] [--N2 n] [--Dk n] [--Dv n] [--bs n] [--C n]\n"
                 "                    [--dtype bf16|fp16|fp32] [--no-causal] [--threads n]\n",
                 why);
    std::exit(2);
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(("missing value after " + a).c_str());
            return argv[++i];
        };
        auto number = [&]() {
            const std::string v = value();
            char* end = nullptr;
            const long long n = std::strtoll(v.c_str(), &end, 10);
            if (end == v.c_str() || *end != '\0' || n < 0) usage(("bad number for " + a + ": " + v).c_str());
            return static_cast<std::int64_t>(n);
        };
        if (a == "--T") o.T = number();
        else if (a == "--N1") o.N1 = number();
        else if (a == "--N2") o.N2 = number();
        else if (a == "--Dk") o.Dk = number();
        else if (a == "--Dv") o.Dv = number();
        else if (a == "--bs") o.bs = number();
        else if (a == "--C") o.C = number();
        else if (a == "--threads") o.threads = static_cast<int>(number());
        else if (a == "--no-causal") o.causal = false;
        else if (a == "--dtype") {
            const std::string d = value();
            if (d == "bf16") o.dtype = DType::bf16;
            else if (d == "fp16") o.dtype = DType::f16;
            else if (d == "fp32") o.dtype = DType::f32;
            else usage(("unknown dtype " + d).c_str());
        } else if (a == "--help" || a == "-h") usage("help");
        else usage(("unknown option " + a).c_str());
    }
    return o;
}

// A dense tensor of the demo dtype filled from N(0, 1), rounded once.
struct Buffer {
    std::vector<unsigned char> bytes;
    TensorView view;
    Buffer(DType t, std::int64_t a, std::int64_t b, std::int64_t c)
        : bytes(static_cast<std::size_t>(a * b * c) * opennsa::dtype_size(t) + 64) {
        view = TensorView::contiguous(bytes.data(), t, {a, b, c});
    }
    void randomize(std::mt19937_64& rng) {
        std::normal_distribution<float> nd;
        for (std::int64_t i = 0; i < view.numel(); ++i)
            opennsa::detail::store_from_f32(bytes.data() + i * static_cast<std::int64_t>(opennsa::dtype_size(view.dtype)),
                                            view.dtype, nd(rng));
    }
    double at(std::int64_t i) const {
        return opennsa::detail::load_as_double(bytes.data() + i * static_cast<std::int64_t>(opennsa::dtype_size(view.dtype)),
                                               view.dtype);
    }
};

// NSA-style selection: block 0, the query's own (local) block, and random earlier blocks, distinct;
// -1 where a row has fewer causal blocks than slots.
void select_blocks(Buffer& topk, const Options& o, std::mt19937_64& rng) {
    auto* idx = reinterpret_cast<std::int32_t*>(topk.bytes.data());
    const std::int64_t blocks = (o.T + o.bs - 1) / o.bs;
    for (std::int64_t t = 0; t < o.T; ++t)
        for (std::int64_t n = 0; n < o.N2; ++n) {
            const std::int64_t visible = o.causal ? t / o.bs + 1 : blocks;
            std::vector<std::int32_t> pool;
            for (std::int64_t x = 1; x < visible; ++x)
                if (x != t / o.bs) pool.push_back(static_cast<std::int32_t>(x));
            std::shuffle(pool.begin(), pool.end(), rng);
            std::vector<std::int32_t> chosen{0};
            if (t / o.bs != 0) chosen.push_back(static_cast<std::int32_t>(t / o.bs));
            for (std::size_t k = 0; chosen.size() < static_cast<std::size_t>(o.C) && k < pool.size(); ++k) chosen.push_back(pool[k]);
            for (std::int64_t j = 0; j < o.C; ++j)
                idx[(t * o.N2 + n) * o.C + j] = j < static_cast<std::int64_t>(chosen.size()) ? chosen[static_cast<std::size_t>(j)] : -1;
        }
}

struct Check {
    double rel = 0, rel_max = 0;
};

Check compare(const Buffer& got, const std::vector<double>& ref) {
    double e2 = 0, r2 = 0, emax = 0, rmax = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        const double e = std::abs(got.at(static_cast<std::int64_t>(i)) - ref[i]);
        e2 += e * e;
        r2 += ref[i] * ref[i];
        emax = std::max(emax, std::isnan(e) ? INFINITY : e);
        rmax = std::max(rmax, std::abs(ref[i]));
    }
    return {r2 > 0 ? std::sqrt(e2 / r2) : std::sqrt(e2), rmax > 0 ? emax / rmax : emax};
}

template <class Fn>
double seconds(Fn&& fn) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    if (o.threads > 0) opennsa::set_num_threads(o.threads);
    std::mt19937_64 rng(20250225);
    Buffer q(o.dtype, o.T, o.N1, o.Dk), k(o.dtype, o.T, o.N2, o.Dk), v(o.dtype, o.T, o.N2, o.Dv),
        dO(o.dtype, o.T, o.N1, o.Dv), out(o.dtype, o.T, o.N1, o.Dv), dq(o.dtype, o.T, o.N1, o.Dk),
        dk(o.dtype, o.T, o.N2, o.Dk), dv(o.dtype, o.T, o.N2, o.Dv), smax(DType::f32, o.T, o.N1, 8),
        ssum(DType::f32, o.T, o.N1, 8), topk(DType::i32, o.T, o.N2, o.C);
    for (Buffer* b : {&q, &k, &v, &dO}) b->randomize(rng);
    select_blocks(topk, o, rng);

    opennsa::Params params;
    params.scale = 1.0 / std::sqrt(static_cast<double>(o.Dk));
    params.head_num = o.N1;
    params.block_size = o.bs;
    params.block_count = o.C;
    params.sparse_mode = o.causal ? opennsa::kSparseModeCausal : opennsa::kSparseModeNone;
    const opennsa::ForwardArgs fa{.query = q.view, .key = k.view, .value = v.view, .topk = topk.view, .atten_mask = {},
                                  .out = out.view, .softmax_max = smax.view, .softmax_sum = ssum.view};
    const opennsa::BackwardArgs ba{.query = q.view, .key = k.view, .value = v.view, .out = out.view, .out_grad = dO.view,
                                   .softmax_max = smax.view, .softmax_sum = ssum.view, .topk = topk.view, .atten_mask = {},
                                   .query_grad = dq.view, .key_grad = dk.view, .value_grad = dv.view};
    std::printf("OpenNSA %s demo: T=%lld N1=%lld N2=%lld Dk=%lld Dv=%lld bs=%lld C=%lld %s %s, %d threads\n",
                opennsa::version(), static_cast<long long>(o.T), static_cast<long long>(o.N1), static_cast<long long>(o.N2),
                static_cast<long long>(o.Dk), static_cast<long long>(o.Dv), static_cast<long long>(o.bs),
                static_cast<long long>(o.C), opennsa::dtype_name(o.dtype), o.causal ? "causal" : "non-causal",
                opennsa::num_threads());
    try {
        opennsa::forward(fa, params);  // warm-up (thread start, page faults)
        opennsa::backward(ba, params);
        const double t_fwd = seconds([&] { opennsa::forward(fa, params); });
        const double t_bwd = seconds([&] { opennsa::backward(ba, params); });
        // FLOPs as DESIGN.md counts them: every selected slot's full block.
        const double work = 2.0 * static_cast<double>(o.T * o.N1 * o.C * o.bs);
        std::printf("forward : %9.2f ms  %7.2f GFLOP/s\n", t_fwd * 1e3, work * static_cast<double>(o.Dk + o.Dv) / t_fwd * 1e-9);
        std::printf("backward: %9.2f ms  %7.2f GFLOP/s\n", t_bwd * 1e3,
                    work * static_cast<double>(3 * o.Dk + 2 * o.Dv) / t_bwd * 1e-9);

        std::printf("checking against the float64 reference...\n");
        const auto fp = sel::validate_forward(fa, params);
        const auto ref_f = sel::reference::forward(fp);
        const auto ref_b = sel::reference::backward(sel::validate_backward(ba, params));
        const double tol_out = o.dtype == DType::bf16 ? 8e-3 : o.dtype == DType::f16 ? 1e-3 : 2e-5;
        const double tol_grad = o.dtype == DType::bf16 ? 1.6e-2 : o.dtype == DType::f16 ? 2e-3 : 2e-5;
        bool ok = true;
        auto report = [&](const char* name, const Check& c, double tol) {
            const bool pass = c.rel <= tol && c.rel_max <= 4 * tol;
            ok = ok && pass;
            std::printf("  %-4s relative error %.2e (tol %.1e), max error / max |ref| %.2e (tol %.1e)  %s\n", name, c.rel,
                        tol, c.rel_max, 4 * tol, pass ? "ok" : "FAIL");
        };
        report("out", compare(out, ref_f.out), tol_out);
        report("dq", compare(dq, ref_b.dq), tol_grad);
        report("dk", compare(dk, ref_b.dk), tol_grad);
        report("dv", compare(dv, ref_b.dv), tol_grad);
        std::printf(ok ? "PASS\n" : "FAIL\n");
        return ok ? 0 : 1;
    } catch (const opennsa::Error& e) {
        std::fprintf(stderr, "opennsa error: %s\n", e.what());
        return 1;
    }
}
