// Bitwise reproducibility: repeated runs and 1, 2 and 3 threads give the same output bytes, on
// every compute path (CI also runs this suite under ThreadSanitizer).
#include <gtest/gtest.h>

#include <cstdlib>

#include "kernels/dispatch.hpp"
#include "ops/compress_attention/avx2.hpp"
#include "ops/compress_attention/cases.hpp"

using namespace nsa_test;

namespace {

struct Outputs {
    std::vector<unsigned char> out, topk, smax, ssum, dq, dk, dv;
    bool operator==(const Outputs&) const = default;
};

Outputs run(const CompressCase& c, int threads) {
    opennsa::set_num_threads(threads);
    CompressTensors t(c);
    opennsa::compress_attention(t.forward_args(), t.params);
    Outputs o{t.out.bytes, t.topk.bytes, t.smax.bytes, t.ssum.bytes, {}, {}, {}};
    opennsa::compress_attention_backward(t.backward_args(), t.params);
    o.dq = t.dq.bytes;
    o.dk = t.dk.bytes;
    o.dv = t.dv.bytes;
    return o;
}

CompressCase determinism_case(opennsa::DType dtype, std::int64_t mode) {
    CompressCase c;
    c.dtype = dtype;
    c.N1 = 8;
    c.N2 = 2;
    c.Dk = 40;
    c.Dv = 24;
    c.l = 8;
    c.d = 4;
    c.sel = 16;
    c.k = 5;
    c.q_lens = {300, 150};
    c.c_lens = {compressed_count(300, c.l, c.d), compressed_count(150, c.l, c.d)};
    c.varlen = true;
    c.pad_q = 3;
    c.pad_kv = 2;
    c.sparse_mode = mode;
    c.atten_mask = mode == 1;
    c.forced = 0.1;
    c.seed = case_seed(77 + static_cast<std::uint64_t>(mode));
    return c;
}

}  // namespace

TEST(CompressDeterminism, SameBitsAcrossRunsAndThreadCounts) {
    for (const char* path : {"portable", "avx2"}) {
        if (std::string(path) == "avx2" && !opennsa::detail::cpu_has_avx2()) continue;
        ::setenv("OPENNSA_KERNEL", path, 1);
        for (auto dtype : {opennsa::DType::bf16, opennsa::DType::f16, opennsa::DType::f32})
            for (std::int64_t mode : {1, 2}) {
                const CompressCase c = determinism_case(dtype, mode);
                const Outputs one = run(c, 1);
                for (int threads : {1, 2, 3})
                    EXPECT_TRUE(run(c, threads) == one) << path << " threads " << threads << " " << c.describe();
            }
    }
    ::unsetenv("OPENNSA_KERNEL");
    opennsa::set_num_threads(0);
}

#if defined(__x86_64__)
TEST(CompressDeterminism, BackwardSameBitsForAnyChunkSize) {
    // The AVX2 backward hands P and dS over in chunks of query tiles; a budget of a few KiB makes
    // every tile its own chunk (and splits batches across chunks).
    if (!opennsa::detail::cpu_has_avx2()) GTEST_SKIP() << "this CPU has no AVX2 + FMA";
    ::setenv("OPENNSA_KERNEL", "avx2", 1);
    for (std::int64_t mode : {1, 2}) {
        const CompressCase c = determinism_case(opennsa::DType::bf16, mode);
        const Outputs whole = run(c, 2);
        for (std::int64_t bytes : {1, 40000, 400000}) {
            ca::avx2::set_chunk_bytes_for_testing(bytes);
            EXPECT_TRUE(run(c, 3) == whole) << "chunk budget " << bytes << " " << c.describe();
        }
        ca::avx2::set_chunk_bytes_for_testing(0);
    }
    ::unsetenv("OPENNSA_KERNEL");
    opennsa::set_num_threads(0);
}
#endif
