// Regression tests of the hardening issue: sizes that used to wrap or explode (broadcast keys with
// 2^57..2^58 rows, huge selectedBlockSize and selectedBlockCount), alignment, a non-finite scale,
// and non-finite inputs, which must give the reference's pattern of NaN / Inf on every path.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

#include "kernels/dispatch.hpp"
#include "ops/select_attention/cases.hpp"

using namespace nsa_test;
using opennsa::DType;
using opennsa::ErrorCode;
using opennsa::TensorView;

namespace {

// The compute paths this CPU has, each forced through OPENNSA_KERNEL for the scope of a test.
std::vector<const char*> paths() {
    std::vector<const char*> p{"portable"};
    if (opennsa::detail::cpu_has_avx2()) p.push_back("avx2");
    return p;
}

struct ForcePath {
    explicit ForcePath(const char* path) { ::setenv("OPENNSA_KERNEL", path, 1); }
    ~ForcePath() { ::unsetenv("OPENNSA_KERNEL"); }
};

template <class Fn>
::testing::AssertionResult throws_code(Fn&& fn, ErrorCode code, const char* needle) {
    try {
        fn();
    } catch (const opennsa::Error& e) {
        const std::string msg = e.what();
        if (e.code() != code) return ::testing::AssertionFailure() << "code " << int(e.code()) << ": " << msg;
        if (msg.find(needle) == std::string::npos || msg.find('\n') != std::string::npos)
            return ::testing::AssertionFailure() << "message \"" << msg << "\" does not name " << needle;
        return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "no error";
}

// Defect 1: key and value broadcast over 2^58 (and 2^57) rows from one row of storage. The
// workspace of such a problem cannot be represented: it must be an error at sizing time on every
// path, not a wrapped size followed by writes past the caller's workspace.
TEST(Hardening, BroadcastKeysWhoseWorkspaceCannotBeSizedAreAnError) {
    for (const auto& [T2, D] : {std::pair<std::int64_t, std::int64_t>{std::int64_t{1} << 58, 8},
                                {std::int64_t{1} << 57, 16}}) {
        std::vector<std::uint16_t> q(static_cast<std::size_t>(D), 0x3c00), kv(static_cast<std::size_t>(D), 0x3c00);
        std::vector<std::uint16_t> out(static_cast<std::size_t>(D), 0xFFFF);
        std::vector<float> smax(8, -1.0f), ssum(8, -1.0f);
        std::vector<std::int32_t> topk{0};
        opennsa::ForwardArgs a;
        a.query = TensorView::contiguous(q.data(), DType::f16, {1, 1, D});
        a.key = TensorView::strided(kv.data(), DType::f16, {T2, 1, D}, {0, 0, 1});
        a.value = a.key;
        a.topk = TensorView::contiguous(topk.data(), DType::i32, {1, 1, 1});
        a.out = TensorView::contiguous(out.data(), DType::f16, {1, 1, D});
        a.softmax_max = TensorView::contiguous(smax.data(), DType::f32, {1, 1, 8});
        a.softmax_sum = TensorView::contiguous(ssum.data(), DType::f32, {1, 1, 8});
        opennsa::Params p;
        p.scale = 0.5;
        p.head_num = 1;
        p.block_size = 8;
        p.block_count = 1;
        p.sparse_mode = opennsa::kSparseModeNone;
        for (const char* path : paths()) {
            SCOPED_TRACE(path);
            ForcePath force(path);
            EXPECT_TRUE(throws_code([&] { (void)opennsa::forward_workspace_bytes(a, p); }, ErrorCode::invalid_argument,
                                    "too large"));
            std::vector<std::byte> small(4096);
            EXPECT_TRUE(throws_code([&] { opennsa::forward(a, p, small); }, ErrorCode::invalid_argument, "too large"));
            for (auto x : out) EXPECT_EQ(x, 0xFFFF);
            for (float x : smax) EXPECT_EQ(x, -1.0f);
        }
    }
}

// Defect 2: any positive selectedBlockSize is valid. A block holds at most its batch's keys, so
// bs = 2^31 - 1, 2^62 and INT64_MAX are one block per batch (index 0 valid), with a workspace
// sized by the keys that exist, and the results are the reference's.
TEST(Hardening, HugeBlockSizesAreOneBlockPerBatch) {
    for (const std::int64_t bs : {std::int64_t{(1LL << 31) - 1}, std::int64_t{1} << 62,
                                  std::numeric_limits<std::int64_t>::max()}) {
        Case c;
        c.dtype = DType::f32;
        c.N1 = 4;
        c.N2 = 2;
        c.Dk = 12;
        c.Dv = 10;
        c.bs = bs;
        c.C = 2;
        c.q_lens = {16, 9};
        c.kv_lens = {16, 12};
        c.varlen = true;
        c.causal = true;
        c.seed = case_seed(static_cast<std::uint64_t>(bs & 0xffff));
        for (const char* path : paths()) {
            SCOPED_TRACE(std::string(path) + " bs=" + std::to_string(bs));
            ForcePath force(path);
            Tensors t(c);  // the random selection is block 0 or -1 (one block per batch)
            EXPECT_LT(opennsa::forward_workspace_bytes(t.forward_args(), t.params), std::size_t{1} << 20);
            opennsa::forward(t.forward_args(), t.params);
            const auto fp = sel::validate_forward(t.forward_args(), t.params);
            const auto ref = sel::reference::forward(fp);
            EXPECT_TRUE(t.out.fully_written());
            EXPECT_TRUE(close(t.out.dense(), ref.out, tol_out(c.dtype), "out"));
            EXPECT_TRUE(stats_ok(t, ref));
            EXPECT_LT(opennsa::backward_workspace_bytes(t.backward_args(), t.params), std::size_t{1} << 22);
            opennsa::backward(t.backward_args(), t.params);
            const auto g = sel::reference::backward(sel::validate_backward(t.backward_args(), t.params));
            EXPECT_TRUE(close(t.dq.dense(), g.dq, tol_grad(c.dtype), "dq"));
            EXPECT_TRUE(close(t.dk.dense(), g.dk, tol_grad(c.dtype), "dk"));
            EXPECT_TRUE(close(t.dv.dense(), g.dv, tol_grad(c.dtype), "dv"));
        }
    }
}

// Defect 3: a broadcast topk (every stride 0) with a huge selectedBlockCount. Validation reads
// each distinct element once; a count whose rows would see more than 2^24 keys is a clear error.
// A large but acceptable count computes (2^16 copies of block 0 weigh as one block).
TEST(Hardening, HugeBroadcastBlockCount) {
    Case c;
    c.dtype = DType::f32;
    c.N1 = 2;
    c.N2 = 1;
    c.Dk = 8;
    c.Dv = 8;
    c.bs = 16;
    c.C = 1;
    c.q_lens = {6};
    c.kv_lens = {20};
    c.causal = false;
    c.seed = case_seed(3);
    Tensors t(c);
    std::int32_t zero = 0;
    opennsa::ForwardArgs a = t.forward_args();
    opennsa::Params p = t.params;
    for (const std::int64_t C : {std::int64_t{1} << 31, std::int64_t{1} << 21}) {
        p.block_count = C;
        a.topk = TensorView::strided(&zero, DType::i32, {c.T1(), 1, C}, {0, 0, 0});
        for (const char* path : paths()) {
            SCOPED_TRACE(path);
            ForcePath force(path);
            t.poison_outputs();
            EXPECT_TRUE(throws_code([&] { opennsa::forward(a, p); }, ErrorCode::invalid_argument, "selectedBlockCount"));
            EXPECT_FALSE(t.out.fully_written());  // not one element written
        }
    }
    const std::int64_t C = std::int64_t{1} << 12;
    p.block_count = C;
    a.topk = TensorView::strided(&zero, DType::i32, {c.T1(), 1, C}, {0, 0, 0});
    // Reference: block 0 once (duplicates scale every weight equally, so out and max are the same;
    // sum is C times larger). fp32 sums of 2^16 terms: 1e-3.
    opennsa::Params p1 = t.params;
    std::vector<std::int32_t> once(static_cast<std::size_t>(c.T1()), 0);
    opennsa::ForwardArgs a1 = t.forward_args();
    a1.topk = TensorView::contiguous(once.data(), DType::i32, {c.T1(), 1, 1});
    const auto ref = sel::reference::forward(sel::validate_forward(a1, p1));
    for (const char* path : paths()) {
        SCOPED_TRACE(path);
        ForcePath force(path);
        t.poison_outputs();
        opennsa::forward(a, p);
        EXPECT_TRUE(t.out.fully_written());
        EXPECT_TRUE(close(t.out.dense(), ref.out, 1e-3, "out"));
        for (std::int64_t r = 0; r < c.T1(); ++r)
            for (std::int64_t h = 0; h < c.N1; ++h) {
                const std::size_t row = static_cast<std::size_t>(r * c.N1 + h);
                EXPECT_NEAR(t.smax.get(r, h, 0), ref.max[row], 1e-5);
                EXPECT_NEAR(t.ssum.get(r, h, 0) / static_cast<double>(C), ref.sum[row], 1e-3 * ref.sum[row]);
            }
    }
}

// Defect 4 (native API): a data pointer that is not aligned to its element size is rejected.
TEST(Hardening, MisalignedDataPointersAreRejected) {
    Case c;
    c.dtype = DType::f32;
    c.seed = case_seed(4);
    Tensors t(c);
    std::vector<unsigned char> raw(t.q.bytes.size() + 8);
    std::memcpy(raw.data() + 1, t.q.bytes.data(), t.q.bytes.size());
    opennsa::ForwardArgs a = t.forward_args();
    a.query.data = raw.data() + 1;
    EXPECT_TRUE(throws_code([&] { opennsa::forward(a, t.params); }, ErrorCode::invalid_argument, "query"));
    EXPECT_TRUE(throws_code([&] { opennsa::forward(a, t.params); }, ErrorCode::invalid_argument, "aligned"));
    a = t.forward_args();
    a.softmax_max.data = static_cast<char*>(a.softmax_max.data) + 2;
    EXPECT_TRUE(throws_code([&] { opennsa::forward(a, t.params); }, ErrorCode::invalid_argument, "softmaxMaxOut"));
    EXPECT_FALSE(t.out.fully_written());
    // An empty view reads nothing: its pointer may be misaligned (as it may be null).
    Case e = c;
    e.q_lens = {0};
    Tensors te(e);
    opennsa::ForwardArgs ae = te.forward_args();
    ae.query.data = raw.data() + 1;
    EXPECT_NO_THROW(opennsa::forward(ae, te.params));
}

// Defect 5: scaleValue must be finite in fp32 (1e39 is finite in fp64 only).
TEST(Hardening, ScaleMustBeFiniteInFp32) {
    Case c;
    c.seed = case_seed(5);
    Tensors t(c);
    for (const double s : {1e39, -1e39, double(INFINITY), double(NAN)}) {
        opennsa::Params p = t.params;
        p.scale = s;
        EXPECT_TRUE(throws_code([&] { opennsa::forward(t.forward_args(), p); }, ErrorCode::invalid_argument,
                                "scaleValue"));
    }
    opennsa::Params p = t.params;
    p.scale = static_cast<double>(FLT_MAX) * 0.5;  // large but finite: accepted
    EXPECT_NO_THROW(opennsa::forward_workspace_bytes(t.forward_args(), p));
}

// Non-finite input gives the reference's pattern of NaN and Inf: elementwise the same isnan and
// isinf, and the finite elements within tolerance.
::testing::AssertionResult same_pattern(const std::vector<double>& got, const std::vector<double>& ref, double tol,
                                        const char* what) {
    std::vector<double> g = got, r = ref;
    std::size_t nonfinite = 0;
    for (std::size_t i = 0; i < g.size(); ++i) {
        const bool gn = std::isnan(g[i]), rn = std::isnan(r[i]), gi = std::isinf(g[i]), ri = std::isinf(r[i]);
        if (gn != rn || gi != ri || (gi && (g[i] > 0) != (r[i] > 0)))
            return ::testing::AssertionFailure() << what << "[" << i << "]: got " << g[i] << ", reference " << r[i];
        if (gn || gi) {
            g[i] = r[i] = 0.0;
            ++nonfinite;
        }
    }
    if (nonfinite == 0) return ::testing::AssertionFailure() << what << ": no non-finite element (test is vacuous)";
    return close(g, r, tol, what);
}

TEST(Hardening, NonFiniteInputsGiveTheReferencePattern) {
    const double bad[] = {NAN, INFINITY, -INFINITY};
    std::mt19937_64 rng(case_seed(6));
    for (int trial = 0; trial < 12; ++trial)
        for (const DType dtype : {DType::f32, DType::bf16, DType::f16}) {
            Case c = random_case(rng, dtype);
            c.C = std::max<std::int64_t>(c.C, 2);
            c.q_lens[0] = std::max<std::int64_t>(c.q_lens[0], 4);
            c.kv_lens[0] = std::max<std::int64_t>(c.kv_lens[0], 4);
            const double v = bad[trial % 3];
            // One poisoned element in q, k, v or dO, in batch 0's rows; out and the statistics are
            // the reference forward's of the poisoned inputs.
            const std::int64_t tq = trial % c.q_lens[0], tk = (trial * 7) % c.kv_lens[0];
            const int which = trial % 4;
            auto make = [&](Tensors& t) {
                if (which == 0) t.q.set(tq, 0, 0, v);
                if (which == 1) t.k.set(tk, 0, c.Dk - 1, v);
                if (which == 2) t.v.set(tk, 0, 0, v);
                if (which == 3) t.dO.set(tq, c.N1 - 1, 0, v);
                t.set_forward_from_reference();
            };
            Tensors base(c);
            make(base);
            const auto fref = sel::reference::forward(sel::validate_forward(base.forward_args(), base.params));
            const auto bref = sel::reference::backward(sel::validate_backward(base.backward_args(), base.params));
            for (const char* path : paths()) {
                SCOPED_TRACE(std::string(path) + " " + c.describe() + " which=" + std::to_string(which));
                ForcePath force(path);
                Tensors t(c);
                make(t);
                // The forward: compare out, max and sum (which == 3 touches only the backward).
                Tensors f(c);
                make(f);
                f.poison_outputs();
                opennsa::forward(f.forward_args(), f.params);
                ASSERT_TRUE(f.out.fully_written());
                std::vector<double> mx, sm;
                for (std::int64_t r = 0; r < c.T1(); ++r)
                    for (std::int64_t h = 0; h < c.N1; ++h) {
                        mx.push_back(f.smax.get(r, h, 0));
                        sm.push_back(f.ssum.get(r, h, 0));
                    }
                if (which != 3) {
                    // Rows that see the bad element (possibly none, e.g. an unselected key) must match.
                    bool any = false;
                    for (double x : fref.out) any = any || !std::isfinite(x);
                    if (any) {
                        EXPECT_TRUE(same_pattern(f.out.dense(), fref.out, tol_out(dtype), "out"));
                        for (std::size_t i = 0; i < mx.size(); ++i) {
                            EXPECT_EQ(std::isnan(mx[i]), std::isnan(fref.max[i])) << "max row " << i;
                            EXPECT_EQ(std::isnan(sm[i]), std::isnan(fref.sum[i])) << "sum row " << i;
                        }
                    }
                }
                for (HostTensor* g : {&t.dq, &t.dk, &t.dv}) g->poison();  // (out and the statistics are inputs here)
                opennsa::backward(t.backward_args(), t.params);
                bool any = false;
                for (const auto* g : {&bref.dq, &bref.dk, &bref.dv})
                    for (double x : *g) any = any || !std::isfinite(x);
                if (!any) continue;  // nothing saw the bad element
                for (const auto& [got, ref, name] :
                     {std::tuple{t.dq.dense(), bref.dq, "dq"}, std::tuple{t.dk.dense(), bref.dk, "dk"},
                      std::tuple{t.dv.dense(), bref.dv, "dv"}}) {
                    bool nf = false;
                    for (double x : ref) nf = nf || !std::isfinite(x);
                    if (nf) EXPECT_TRUE(same_pattern(got, ref, tol_grad(dtype), name));
                    else EXPECT_TRUE(close(got, ref, tol_grad(dtype), name));
                }
            }
        }
}

}  // namespace
