// One training step of NSA's selected-attention branch through the CANN-compatible C API:
// forward (aclnnNsaSelectedAttention) then backward (aclnnNsaSelectedAttentionGrad) on realistic
// sizes, timed, and checked against a float64 evaluation of SPEC.md's formulas on a sample of
// query rows (out, softmax statistics, dq) and key blocks (dk, dv). Exits non-zero on a mismatch.
//
//   nsa_train_step [--T 4096] [--N1 16] [--N2 1] [--Dk 192] [--Dv 128] [--bs 64] [--C 16]
//                  [--dtype bf16|fp16] [--no-causal] [--iters 3] [--rows 32] [--blocks 3] [--seed 1]
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <random>
#include <string>

#include "aclnnop/aclnn_nsa_selected_attention.h"
#include "aclnnop/aclnn_nsa_selected_attention_grad.h"
#include "common.hpp"

using example::DeviceTensor;

namespace {

struct Options {
    std::int64_t T = 4096, N1 = 16, N2 = 1, Dk = 192, Dv = 128, bs = 64, C = 16;
    bool causal = true;
    aclDataType dtype = ACL_BF16;
    int iters = 3, rows = 32, blocks = 3;
    unsigned seed = 1;
};

[[noreturn]] void usage(const char* why) {
    std::fprintf(stderr,
                 "%s\nusage: nsa_train_step [--T n] [--N1 n] [--N2 n] [--Dk n] [--Dv n] [--bs n] [--C n]\n"
                 "       [--dtype bf16|fp16] [--no-causal] [--iters n] [--rows n] [--blocks n] [--seed n]\n",
                 why);
    std::exit(64);
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--no-causal") {
            o.causal = false;
            continue;
        }
        if (i + 1 >= argc) usage(("missing value after " + a).c_str());
        const std::string v = argv[++i];
        if (a == "--dtype") {
            if (v != "bf16" && v != "fp16") usage("--dtype must be bf16 or fp16");
            o.dtype = v == "bf16" ? ACL_BF16 : ACL_FLOAT16;
            continue;
        }
        char* end = nullptr;
        const long long n = std::strtoll(v.c_str(), &end, 10);
        if (*end != '\0' || n < 0 || (n == 0 && a != "--T")) usage(("bad value for " + a + ": " + v).c_str());
        if (a == "--T") o.T = n;
        else if (a == "--N1") o.N1 = n;
        else if (a == "--N2") o.N2 = n;
        else if (a == "--Dk") o.Dk = n;
        else if (a == "--Dv") o.Dv = n;
        else if (a == "--bs") o.bs = n;
        else if (a == "--C") o.C = n;
        else if (a == "--iters") o.iters = static_cast<int>(n);
        else if (a == "--rows") o.rows = static_cast<int>(n);
        else if (a == "--blocks") o.blocks = static_cast<int>(n);
        else if (a == "--seed") o.seed = static_cast<unsigned>(n);
        else usage(("unknown option " + a).c_str());
    }
    if (o.N1 % o.N2 != 0) usage("N1 must be a multiple of N2");
    return o;
}

// NSA-like selection for one batch: each token's slots hold block 0, its local block, then random
// distinct earlier blocks (later blocks too when not causal); -1 where no block is left.
std::vector<std::int32_t> nsa_selection(const Options& o, std::mt19937_64& rng) {
    const std::int64_t blocks = (o.T + o.bs - 1) / o.bs;
    std::vector<std::int32_t> topk(static_cast<std::size_t>(o.T * o.N2 * o.C), -1);
    std::vector<std::int32_t> pool;
    for (std::int64_t t = 0; t < o.T; ++t) {
        const auto local = static_cast<std::int32_t>(t / o.bs);
        const std::int32_t last = o.causal ? local : static_cast<std::int32_t>(blocks - 1);
        for (std::int64_t n = 0; n < o.N2; ++n) {
            std::int32_t* slots = &topk[static_cast<std::size_t>((t * o.N2 + n) * o.C)];
            std::int64_t used = 0;
            slots[used++] = 0;
            if (local != 0 && used < o.C) slots[used++] = local;
            pool.clear();
            for (std::int32_t b = 1; b <= last; ++b)
                if (b != local) pool.push_back(b);
            std::shuffle(pool.begin(), pool.end(), rng);
            for (std::size_t i = 0; i < pool.size() && used < o.C; ++i) slots[used++] = pool[i];
        }
    }
    return topk;
}

// Dense host copies of the inputs and outputs as doubles, for the float64 evaluation.
struct HostData {
    const Options& o;
    std::vector<double> q, k, v, dO, out, dq, dk, dv;
    std::vector<float> smax, ssum;
    std::vector<std::int32_t> topk;
    double scale;

    double dot(const double* a, const double* b, std::int64_t n) const {
        double s = 0;
        for (std::int64_t i = 0; i < n; ++i) s += a[i] * b[i];
        return s;
    }
    const double* row(const std::vector<double>& x, std::int64_t t, std::int64_t heads, std::int64_t h,
                      std::int64_t d) const {
        return x.data() + (t * heads + h) * d;
    }
    // The key positions token t sees through kv head n2, one per (slot, position), duplicates kept.
    std::vector<std::int64_t> visible(std::int64_t t, std::int64_t n2) const {
        std::vector<std::int64_t> keys;
        for (std::int64_t j = 0; j < o.C; ++j) {
            const std::int32_t x = topk[static_cast<std::size_t>((t * o.N2 + n2) * o.C + j)];
            if (x < 0) continue;
            for (std::int64_t p = x * o.bs; p < std::min<std::int64_t>((x + 1) * o.bs, o.T); ++p)
                if (!o.causal || p <= t) keys.push_back(p);
        }
        return keys;
    }
    double score(std::int64_t t, std::int64_t h, std::int64_t p) const {
        return scale * dot(row(q, t, o.N1, h, o.Dk), row(k, p, o.N2, h / (o.N1 / o.N2), o.Dk), o.Dk);
    }
};

// Accumulates SPEC.md section 7's two error measures over the sampled elements.
struct Accuracy {
    double err2 = 0, ref2 = 0, max_err = 0, max_ref = 0;
    void add(double got, double ref) {
        const double e = std::abs(got - ref);
        err2 += e * e;
        ref2 += ref * ref;
        max_err = std::isnan(e) ? INFINITY : std::max(max_err, e);
        max_ref = std::max(max_ref, std::abs(ref));
    }
    bool report(const char* name, double tol) const {
        const double rel = std::sqrt(err2 / std::max(ref2, 1e-300)), rel_max = max_err / std::max(max_ref, 1e-300);
        const bool ok = rel <= tol && rel_max <= 4 * tol;
        std::printf("  %-4s rel. Frobenius error %.2e, max error / max |ref| %.2e (tol %.1e)  %s\n", name, rel,
                    rel_max, tol, ok ? "ok" : "MISMATCH");
        return ok;
    }
};

// Forward outputs and dq of the sampled rows, against float64.
bool check_rows(const HostData& d, const std::vector<std::int64_t>& rows, double tol_out, double tol_grad) {
    const Options& o = d.o;
    const std::int64_t G = o.N1 / o.N2;
    Accuracy out_acc, dq_acc;
    double worst_lse = 0;
    for (std::int64_t t : rows)
        for (std::int64_t h = 0; h < o.N1; ++h) {
            const std::vector<std::int64_t> keys = d.visible(t, h / G);
            const double* g = d.row(d.dO, t, o.N1, h, o.Dv);
            // Forward in float64.
            std::vector<double> s(keys.size()), ref_out(static_cast<std::size_t>(o.Dv), 0.0);
            double mx = -INFINITY, sum = 0;
            for (std::size_t i = 0; i < keys.size(); ++i) mx = std::max(mx, s[i] = d.score(t, h, keys[i]));
            for (std::size_t i = 0; i < keys.size(); ++i) sum += std::exp(s[i] - mx);
            for (std::size_t i = 0; i < keys.size(); ++i) {
                const double* vr = d.row(d.v, keys[i], o.N2, h / G, o.Dv);
                for (std::int64_t e = 0; e < o.Dv; ++e) ref_out[static_cast<std::size_t>(e)] += std::exp(s[i] - mx) / sum * vr[e];
            }
            const double* got = d.row(d.out, t, o.N1, h, o.Dv);
            for (std::int64_t e = 0; e < o.Dv; ++e) out_acc.add(got[e], keys.empty() ? 0.0 : ref_out[static_cast<std::size_t>(e)]);
            const std::size_t st = static_cast<std::size_t>((t * o.N1 + h) * 8);
            if (!keys.empty())
                worst_lse = std::max(worst_lse, std::abs(std::log(d.ssum[st]) + d.smax[st] - (mx + std::log(sum))));
            // Backward in float64 from the stored statistics and output, as the operator reads them.
            std::vector<double> ref_dq(static_cast<std::size_t>(o.Dk), 0.0);
            const double Dt = d.dot(g, got, o.Dv);
            for (std::size_t i = 0; i < keys.size(); ++i) {
                const double P = std::exp(s[i] - d.smax[st]) / d.ssum[st];
                const double dS = P * (d.dot(g, d.row(d.v, keys[i], o.N2, h / G, o.Dv), o.Dv) - Dt);
                const double* kr = d.row(d.k, keys[i], o.N2, h / G, o.Dk);
                for (std::int64_t e = 0; e < o.Dk; ++e) ref_dq[static_cast<std::size_t>(e)] += d.scale * dS * kr[e];
            }
            const double* got_dq = d.row(d.dq, t, o.N1, h, o.Dk);
            for (std::int64_t e = 0; e < o.Dk; ++e) dq_acc.add(got_dq[e], ref_dq[static_cast<std::size_t>(e)]);
        }
    const bool lse_ok = worst_lse <= 1e-3;
    std::printf("  lse  max |log(sum) + max - logsumexp| %.2e (tol 1e-3)  %s\n", worst_lse, lse_ok ? "ok" : "MISMATCH");
    // Every report prints, so each is evaluated before they are combined.
    const bool out_ok = out_acc.report("out", tol_out);
    const bool dq_ok = dq_acc.report("dq", tol_grad);
    return out_ok && dq_ok && lse_ok;
}

// dk and dv of the sampled key blocks (every token, head and slot that selected them), against float64.
bool check_blocks(const HostData& d, const std::vector<std::pair<std::int64_t, std::int64_t>>& blocks, double tol) {
    const Options& o = d.o;
    const std::int64_t G = o.N1 / o.N2;
    Accuracy dk_acc, dv_acc;
    for (auto [n2, b] : blocks) {
        const std::int64_t p0 = b * o.bs, p1 = std::min<std::int64_t>(p0 + o.bs, o.T);
        std::vector<double> ref_dk(static_cast<std::size_t>((p1 - p0) * o.Dk), 0.0),
            ref_dv(static_cast<std::size_t>((p1 - p0) * o.Dv), 0.0);
        for (std::int64_t t = 0; t < o.T; ++t)
            for (std::int64_t j = 0; j < o.C; ++j) {
                if (d.topk[static_cast<std::size_t>((t * o.N2 + n2) * o.C + j)] != b) continue;
                for (std::int64_t h = n2 * G; h < (n2 + 1) * G; ++h) {
                    const std::size_t st = static_cast<std::size_t>((t * o.N1 + h) * 8);
                    const double* g = d.row(d.dO, t, o.N1, h, o.Dv);
                    const double* qr = d.row(d.q, t, o.N1, h, o.Dk);
                    const double Dt = d.dot(g, d.row(d.out, t, o.N1, h, o.Dv), o.Dv);
                    for (std::int64_t p = p0; p < p1; ++p) {
                        if (o.causal && p > t) continue;
                        const double P = std::exp(d.score(t, h, p) - d.smax[st]) / d.ssum[st];
                        const double dS = P * (d.dot(g, d.row(d.v, p, o.N2, n2, o.Dv), o.Dv) - Dt);
                        for (std::int64_t e = 0; e < o.Dk; ++e)
                            ref_dk[static_cast<std::size_t>((p - p0) * o.Dk + e)] += d.scale * dS * qr[e];
                        for (std::int64_t e = 0; e < o.Dv; ++e)
                            ref_dv[static_cast<std::size_t>((p - p0) * o.Dv + e)] += P * g[e];
                    }
                }
            }
        for (std::int64_t p = p0; p < p1; ++p) {
            for (std::int64_t e = 0; e < o.Dk; ++e)
                dk_acc.add(d.row(d.dk, p, o.N2, n2, o.Dk)[e], ref_dk[static_cast<std::size_t>((p - p0) * o.Dk + e)]);
            for (std::int64_t e = 0; e < o.Dv; ++e)
                dv_acc.add(d.row(d.dv, p, o.N2, n2, o.Dv)[e], ref_dv[static_cast<std::size_t>((p - p0) * o.Dv + e)]);
        }
    }
    const bool dk_ok = dk_acc.report("dk", tol);
    const bool dv_ok = dv_acc.report("dv", tol);
    return dk_ok && dv_ok;
}

// Both phases, then synchronize; returns the wall time of the launch in ms.
template <class Prepare, class Launch>
double run_op(Prepare&& prepare, Launch&& launch, aclrtStream stream) {
    std::uint64_t ws_size = 0;
    aclOpExecutor* ex = nullptr;
    CHECK_ACL(prepare(&ws_size, &ex));
    void* ws = nullptr;
    if (ws_size > 0) CHECK_ACL(aclrtMalloc(&ws, ws_size, ACL_MEM_MALLOC_HUGE_FIRST));
    const auto t0 = std::chrono::steady_clock::now();
    CHECK_ACL(launch(ws, ws_size, ex, stream));
    CHECK_ACL(aclrtSynchronizeStream(stream));
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (ws) CHECK_ACL(aclrtFree(ws));
    return ms;
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    const example::Half half{o.dtype};
    std::printf("nsa_train_step: T=%lld N1=%lld N2=%lld Dk=%lld Dv=%lld bs=%lld C=%lld %s %s\n",
                static_cast<long long>(o.T), static_cast<long long>(o.N1), static_cast<long long>(o.N2),
                static_cast<long long>(o.Dk), static_cast<long long>(o.Dv), static_cast<long long>(o.bs),
                static_cast<long long>(o.C), o.dtype == ACL_BF16 ? "bf16" : "fp16", o.causal ? "causal" : "no mask");

    CHECK_ACL(aclInit(nullptr));
    CHECK_ACL(aclrtSetDevice(0));
    aclrtStream stream = nullptr;
    CHECK_ACL(aclrtCreateStream(&stream));

    // Inputs, rounded to the 16-bit dtype once; the float64 check reads the rounded values.
    std::mt19937_64 rng(o.seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto random_tensor = [&](std::int64_t n, std::vector<double>& exact) {
        std::vector<std::uint16_t> bits(static_cast<std::size_t>(n));
        exact.resize(bits.size());
        for (std::size_t i = 0; i < bits.size(); ++i) exact[i] = half.decode(bits[i] = half.encode(normal(rng)));
        return bits;
    };
    HostData d{o, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, 1.0 / std::sqrt(static_cast<double>(o.Dk))};
    DeviceTensor q({o.T, o.N1, o.Dk}, o.dtype), k({o.T, o.N2, o.Dk}, o.dtype), v({o.T, o.N2, o.Dv}, o.dtype),
        dO({o.T, o.N1, o.Dv}, o.dtype), out({o.T, o.N1, o.Dv}, o.dtype), smax({o.T, o.N1, 8}, ACL_FLOAT),
        ssum({o.T, o.N1, 8}, ACL_FLOAT), topk({o.T, o.N2, o.C}, ACL_INT32), dq({o.T, o.N1, o.Dk}, o.dtype),
        dk({o.T, o.N2, o.Dk}, o.dtype), dv({o.T, o.N2, o.Dv}, o.dtype);
    q.upload(random_tensor(o.T * o.N1 * o.Dk, d.q));
    k.upload(random_tensor(o.T * o.N2 * o.Dk, d.k));
    v.upload(random_tensor(o.T * o.N2 * o.Dv, d.v));
    dO.upload(random_tensor(o.T * o.N1 * o.Dv, d.dO));
    d.topk = nsa_selection(o, rng);
    topk.upload(d.topk);

    char layout[] = "TND";
    const std::int64_t sparse_mode = o.causal ? 2 : 0;
    auto forward_prepare = [&](std::uint64_t* ws, aclOpExecutor** ex) {
        return aclnnNsaSelectedAttentionGetWorkspaceSize(q.tensor, k.tensor, v.tensor, topk.tensor, nullptr, nullptr,
                                                         nullptr, d.scale, o.N1, layout, sparse_mode, o.bs, o.C,
                                                         smax.tensor, ssum.tensor, out.tensor, ws, ex);
    };
    auto backward_prepare = [&](std::uint64_t* ws, aclOpExecutor** ex) {
        return aclnnNsaSelectedAttentionGradGetWorkspaceSize(
            q.tensor, k.tensor, v.tensor, out.tensor, dO.tensor, smax.tensor, ssum.tensor, topk.tensor, nullptr,
            nullptr, nullptr, d.scale, o.bs, o.C, o.N1, layout, sparse_mode, dq.tensor, dk.tensor, dv.tensor, ws, ex);
    };

    // Timing: the best of `iters` runs of each phase (the first also warms caches and threads).
    const double work = 2.0 * static_cast<double>(o.T * o.N1 * o.C * o.bs);
    const double fwd_flop = work * static_cast<double>(o.Dk + o.Dv), bwd_flop = work * static_cast<double>(3 * o.Dk + 2 * o.Dv);
    double fwd_ms = INFINITY, bwd_ms = INFINITY;
    for (int i = 0; i < std::max(o.iters, 1); ++i) {
        fwd_ms = std::min(fwd_ms, run_op(forward_prepare, aclnnNsaSelectedAttention, stream));
        bwd_ms = std::min(bwd_ms, run_op(backward_prepare, aclnnNsaSelectedAttentionGrad, stream));
    }
    std::printf("forward : %9.2f ms  %8.1f GFLOP/s\n", fwd_ms, fwd_flop / fwd_ms * 1e-6);
    std::printf("backward: %9.2f ms  %8.1f GFLOP/s\n", bwd_ms, bwd_flop / bwd_ms * 1e-6);

    // Results back, as doubles.
    auto fetch = [&](const DeviceTensor& t, std::vector<double>& to) {
        const std::vector<std::uint16_t> bits = t.download<std::uint16_t>();
        to.resize(bits.size());
        for (std::size_t i = 0; i < bits.size(); ++i) to[i] = half.decode(bits[i]);
    };
    fetch(out, d.out);
    fetch(dq, d.dq);
    fetch(dk, d.dk);
    fetch(dv, d.dv);
    d.smax = smax.download<float>();
    d.ssum = ssum.download<float>();

    // The sample: random query rows (the first and last included), and key blocks: block 0 (which
    // every token selects), the last block, and random others, each on a random kv head.
    std::vector<std::int64_t> rows;
    std::uniform_int_distribution<std::int64_t> any_row(0, std::max<std::int64_t>(o.T - 1, 0));
    if (o.T > 0) rows = {0, o.T - 1};
    while (o.T > 0 && static_cast<int>(rows.size()) < o.rows) rows.push_back(any_row(rng));
    const std::int64_t nblocks = (o.T + o.bs - 1) / o.bs;
    std::vector<std::pair<std::int64_t, std::int64_t>> blocks;
    std::uniform_int_distribution<std::int64_t> any_head(0, o.N2 - 1), any_block(0, std::max<std::int64_t>(nblocks - 1, 0));
    for (int i = 0; i < o.blocks && nblocks > 0; ++i)
        blocks.emplace_back(any_head(rng), i == 0 ? 0 : i == 1 ? nblocks - 1 : any_block(rng));

    const bool bf16 = o.dtype == ACL_BF16;
    std::printf("check against float64 (%zu query rows x %lld heads, %zu key blocks):\n", rows.size(),
                static_cast<long long>(o.N1), blocks.size());
    // Both checks run (and print) even when the first fails.
    const bool rows_ok = check_rows(d, rows, bf16 ? 8e-3 : 1e-3, bf16 ? 1.6e-2 : 2e-3);
    const bool blocks_ok = check_blocks(d, blocks, bf16 ? 1.6e-2 : 2e-3);
    const bool ok = rows_ok && blocks_ok;

    CHECK_ACL(aclrtDestroyStream(stream));
    CHECK_ACL(aclrtResetDevice(0));
    CHECK_ACL(aclFinalize());
    std::printf(ok ? "PASSED\n" : "FAILED\n");
    return ok ? 0 : 1;
}
