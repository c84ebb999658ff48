// Every compute path (AVX2 where the CPU has it, and OPENNSA_KERNEL=portable) against the float64
// reference and against the training compression: random paged problems in every dtype and
// layout, named edge cases, token-by-token decoding that must rebuild training's rows bit for
// bit, and scattered pages that must give the bits of contiguous ones. The cache is poisoned
// before each call: the triggered slots must be fully written and no other byte of its buffer;
// the inputs must keep every byte. Tolerances: docs/spec/README.md (fp16 1e-3, bf16 8e-3).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "ops/compress_with_cache/cases.hpp"

using namespace cwc_test;
using nsa_test::case_seed;
using nsa_test::close;

namespace {

void check_case(const Case& c) {
    SCOPED_TRACE(c.describe());
    Tensors t(c);
    const auto before = input_bytes(t);
    opennsa::compress_with_cache(t.args(), t.params);
    EXPECT_TRUE(t.only_slots_written());
    EXPECT_TRUE(close(t.written(), t.reference(), tol(c.dtype), "outputCache"));
    EXPECT_TRUE(input_bytes(t) == before) << "an input changed";
}

Case base(DType dtype, std::uint64_t salt) {
    Case c;
    c.dtype = dtype;
    c.seed = case_seed(salt);
    return c;
}

const DType kAllDtypes[] = {DType::f16, DType::bf16, DType::f32, DType::f64};

// Bytes of element (i, j, k) of two views are the same.
bool same_element(const HostTensor& a, const std::vector<std::int64_t>& ia, const HostTensor& b,
                  const std::vector<std::int64_t>& ib) {
    return std::memcmp(a.bytes.data() + offset_bytes(a, ia), b.bytes.data() + offset_bytes(b, ib),
                       opennsa::dtype_size(a.view.dtype)) == 0;
}

// Copies raw token p of batch b (every head and element) from one paged cache to another,
// through each one's block table.
void copy_token(const Tensors& from, Tensors& to, std::int64_t b, std::int64_t p) {
    const std::int64_t P = from.c.P, fp = from.page(b, p / P), tp = to.page(b, p / P);
    const std::size_t elt = opennsa::dtype_size(from.c.dtype);
    for (std::int64_t h = 0; h < from.c.N; ++h)
        for (std::int64_t e = 0; e < from.c.D; ++e)
            std::memcpy(to.input.bytes.data() + offset_bytes(to.input, {tp, p % P, h, e}),
                        from.input.bytes.data() + offset_bytes(from.input, {fp, p % P, h, e}), elt);
}

}  // namespace

TEST(CompressWithCacheOps, RandomShapesMatchReference) {
    for (const char* path : kernel_paths()) {
        PathScope scope(path);
        SCOPED_TRACE(path);
        std::mt19937_64 rng(case_seed(100));
        for (DType dtype : kAllDtypes)
            for (int i = 0; i < 24; ++i) check_case(random_case(rng, dtype, i % 2 == 1));
    }
}

TEST(CompressWithCacheOps, EdgeCases) {
    for (const char* path : kernel_paths()) {
        PathScope scope(path);
        SCOPED_TRACE(path);
        for (DType dtype : kAllDtypes) {
            Case c = base(dtype, 200);
            c.N = 3, c.D = 13, c.l = 6, c.d = 4;
            c.lens = {5, 7, 3, 0, 1};  // nothing triggered: nothing written
            check_case(c);
            c.lens = {6, 10, 14, 18, 7, 0};  // L == l, one to three strides later, one past, empty
            check_case(c);
            c.P = 1;  // every window row on its own page
            check_case(c);
            c.P = 100;  // one page holds everything
            check_case(c);
            c.P = 5, c.lens = {10, 14};  // windows that start on a page boundary or cross one
            check_case(c);
            // l == d (no overlap), d == 1 (every token triggers), l == 1
            c = base(dtype, 201);
            c.N = 1, c.D = 9, c.l = 5, c.d = 5, c.P = 3, c.lens = {25, 5, 4, 11};
            check_case(c);
            c.d = 1, c.lens = {5, 6, 7, 4};
            check_case(c);
            c.l = 1, c.d = 1, c.lens = {1, 2, 9};
            check_case(c);
            // D = 1, D = 7 (below one vector), 8, 65 (a task of 64 and one of 1)
            for (std::int64_t D : {1, 7, 8, 65}) {
                c = base(dtype, 202 + static_cast<std::uint64_t>(D));
                c.N = 2, c.D = D, c.l = 4, c.d = 2, c.P = 3, c.lens = {8, 6};
                check_case(c);
            }
            // the production shape (N = 4, D = 192 or 128, l = 32, d = 16, P = 128)
            c = base(dtype, 300);
            c.N = 4, c.D = 192, c.l = 32, c.d = 16, c.P = 128, c.lens = {144, 32, 257, 272};
            check_case(c);
            c.D = 128;
            check_case(c);
            // long sequences on large pages (positions far into the sequence)
            c = base(dtype, 301);
            c.N = 1, c.D = 3, c.l = 32, c.d = 16, c.P = 4096, c.lens = {32768, 32768 + 16, 20000};
            check_case(c);
        }
    }
}

TEST(CompressWithCacheOps, EveryLayout) {
    const Layout layouts[] = {Layout::contiguous, Layout::padded, Layout::strided};
    for (const char* path : kernel_paths()) {
        PathScope scope(path);
        SCOPED_TRACE(path);
        for (DType dtype : {DType::bf16, DType::f32})
            for (Layout in : layouts)
                for (Layout cache : layouts)
                    for (bool wt : {false, true}) {
                        Case c = base(dtype, 400);
                        c.N = 3, c.D = 21, c.l = 6, c.d = 3, c.P = 4, c.lens = {6, 12, 13, 9};
                        c.input = in, c.cache = cache, c.weight_transposed = wt;
                        check_case(c);
                    }
    }
}

// The rows a call does not write keep their earlier contents (here random values, not poison).
TEST(CompressWithCacheOps, OtherRowsKeepTheirContents) {
    Case c = base(DType::bf16, 500);
    c.N = 2, c.D = 19, c.l = 8, c.d = 4, c.P = 8, c.lens = {8, 9, 16, 3}, c.spare_rows = 6;
    Tensors t(c);
    std::mt19937_64 rng(c.seed);
    std::normal_distribution<double> nd;
    for (std::int64_t r = 0; r < t.R; ++r)
        for (std::int64_t h = 0; h < c.N; ++h)
            for (std::int64_t e = 0; e < c.D; ++e) set(t.cache, {r, h, e}, nd(rng));
    const HostTensor before = t.cache;
    opennsa::compress_with_cache(t.args(), t.params);
    std::vector<bool> written(static_cast<std::size_t>(t.R), false);
    for (std::int64_t b = 0; b < c.B(); ++b)
        if (c.triggered(b)) written[static_cast<std::size_t>(t.slot(b))] = true;
    for (std::int64_t r = 0; r < t.R; ++r)
        for (std::int64_t h = 0; h < c.N; ++h)
            for (std::int64_t e = 0; e < c.D; ++e)
                if (!written[static_cast<std::size_t>(r)]) {
                    ASSERT_TRUE(same_element(t.cache, {r, h, e}, before, {r, h, e})) << "row " << r << " changed";
                }
    EXPECT_TRUE(close(t.written(), t.reference(), tol(c.dtype), "outputCache"));
}

// Decoding token by token (lengths 1 .. T_b, the operator called after each append, each
// triggered window written to the row training gives it) rebuilds, bit for bit, the rows the
// training compression gives for the whole sequences on the same path. Tokens not yet appended
// are NaN in the raw cache, so a read past the newest token would show.
TEST(CompressWithCacheOps, TokenByTokenMatchesTrainingBitwise) {
    struct Shape {
        std::int64_t N, D, l, d, P;
        std::vector<std::int64_t> lens;
    };
    const Shape shapes[] = {{4, 192, 32, 16, 16, {100, 77, 64}}, {3, 19, 7, 3, 5, {40, 7, 23}}, {2, 8, 5, 5, 3, {31, 5}}};
    for (const char* path : kernel_paths()) {
        PathScope scope(path);
        for (DType dtype : kAllDtypes)
            for (const Shape& s : shapes) {
                Case c = base(dtype, 600);
                c.N = s.N, c.D = s.D, c.l = s.l, c.d = s.d, c.P = s.P, c.lens = s.lens;
                c.garble_unread = false;
                SCOPED_TRACE(std::string(path) + " " + c.describe());
                Tensors full(c);  // every token of the final sequences

                // Training: the same tokens as one TND tensor with cumulative ends.
                std::int64_t T = 0;
                std::vector<std::int64_t> ends, out_start;
                opennsa::CompressParams tp;
                tp.block_size = c.l, tp.stride = c.d;
                std::int64_t Tc = 0;
                for (std::int64_t L : c.lens) {
                    out_start.push_back(Tc);
                    Tc += L >= c.l ? (L - c.l) / c.d + 1 : 0;
                    tp.seq_lens.push_back(T += L);
                }
                HostTensor x = guarded_tensor(dtype, {T, c.N, c.D}, {c.N * c.D, c.D, 1});
                HostTensor y = guarded_tensor(dtype, {Tc, c.N, c.D}, {c.N * c.D, c.D, 1});
                for (std::int64_t b = 0, t0 = 0; b < c.B(); t0 += c.lens[static_cast<std::size_t>(b)], ++b)
                    for (std::int64_t p = 0; p < c.lens[static_cast<std::size_t>(b)]; ++p)
                        for (std::int64_t h = 0; h < c.N; ++h)
                            for (std::int64_t e = 0; e < c.D; ++e)
                                std::memcpy(x.bytes.data() + offset_bytes(x, {t0 + p, h, e}),
                                            full.input.bytes.data() +
                                                offset_bytes(full.input, {full.page(b, p / c.P), p % c.P, h, e}),
                                            opennsa::dtype_size(dtype));
                opennsa::compress({x.view, full.weight.view, y.view}, tp);

                // Decoding: a raw cache that starts all NaN, a cache of Tc rows.
                Tensors step(c);
                std::fill(step.input.bytes.begin(), step.input.bytes.end(), 0xFF);
                for (std::int64_t b = 0; b < c.B(); ++b)
                    for (std::int64_t j = 0; j < step.cols; ++j) step.set_page(b, j, static_cast<std::int32_t>(full.page(b, j)));
                step.cache = guarded_tensor(dtype, {Tc, c.N, c.D}, {c.N * c.D, c.D, 1});
                step.cache.poison();
                const std::int64_t longest = *std::max_element(c.lens.begin(), c.lens.end());
                opennsa::CompressWithCacheParams params = step.params;
                for (std::int64_t t = 1; t <= longest; ++t) {
                    for (std::int64_t b = 0; b < c.B(); ++b) {
                        const std::int64_t L = std::min(t, c.lens[static_cast<std::size_t>(b)]);
                        if (t <= c.lens[static_cast<std::size_t>(b)]) copy_token(full, step, b, t - 1);
                        params.seq_lens[static_cast<std::size_t>(b)] = L;
                        const bool trig = opennsa::compress_with_cache_triggered(L, c.l, c.d);
                        step.set_slot(b, trig ? static_cast<std::int32_t>(out_start[static_cast<std::size_t>(b)] + (L - c.l) / c.d) : -1);
                    }
                    opennsa::compress_with_cache(step.args(), params);
                }
                for (std::int64_t o = 0; o < Tc; ++o)
                    for (std::int64_t h = 0; h < c.N; ++h)
                        for (std::int64_t e = 0; e < c.D; ++e)
                            ASSERT_TRUE(same_element(step.cache, {o, h, e}, y, {o, h, e}))
                                << "row " << o << " head " << h << " element " << e << ": " << get(step.cache, {o, h, e})
                                << " vs training " << get(y, {o, h, e});
            }
    }
}

// The same logical tokens on shuffled pages and on pages in order give the same bits.
TEST(CompressWithCacheOps, ScatteredPagesGiveTheBitsOfContiguousPages) {
    for (const char* path : kernel_paths()) {
        PathScope scope(path);
        for (DType dtype : {DType::bf16, DType::f16, DType::f32}) {
            Case c = base(dtype, 700);
            c.N = 4, c.D = 40, c.l = 16, c.d = 8, c.P = 8, c.lens = {64, 40, 33, 24, 16};
            c.garble_unread = false;
            SCOPED_TRACE(std::string(path) + " " + c.describe());
            Tensors scattered(c);
            c.shuffle_pages = false;
            Tensors ordered(c);
            for (std::int64_t b = 0; b < c.B(); ++b) {
                for (std::int64_t p = 0; p < c.lens[static_cast<std::size_t>(b)]; ++p) copy_token(scattered, ordered, b, p);
                ordered.set_slot(b, static_cast<std::int32_t>(scattered.slot(b)));
            }
            std::memcpy(ordered.weight.bytes.data(), scattered.weight.bytes.data(), ordered.weight.bytes.size());
            opennsa::compress_with_cache(scattered.args(), scattered.params);
            opennsa::compress_with_cache(ordered.args(), ordered.params);
            EXPECT_TRUE(scattered.only_slots_written());
            EXPECT_TRUE(scattered.cache.bytes == ordered.cache.bytes);
        }
    }
}

// Non-finite raw values reach exactly the slot whose window holds them, as in the reference.
TEST(CompressWithCacheOps, NonFiniteValuesStayInTheirWindow) {
    for (const char* path : kernel_paths()) {
        PathScope scope(path);
        Case c = base(DType::bf16, 800);
        c.N = 2, c.D = 17, c.l = 4, c.d = 2, c.P = 4, c.lens = {6, 8};
        c.garble_unread = false;
        Tensors t(c);
        set(t.input, {t.page(0, 5 / c.P), 5 % c.P, 1, 3}, INFINITY);  // batch 0, token 5 (in its window)
        set(t.input, {t.page(1, 1 / c.P), 1 % c.P, 0, 0}, NAN);       // batch 1, token 1 (before its window)
        opennsa::compress_with_cache(t.args(), t.params);
        const auto got = t.written(), ref = t.reference();
        for (std::size_t i = 0; i < got.size(); ++i) {
            EXPECT_EQ(std::isnan(got[i]), std::isnan(ref[i])) << i;
            EXPECT_EQ(std::isinf(got[i]), std::isinf(ref[i])) << i;
        }
        EXPECT_TRUE(std::isinf(got[static_cast<std::size_t>(1 * c.D + 3)]));
    }
}
