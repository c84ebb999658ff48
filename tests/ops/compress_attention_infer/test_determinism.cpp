// Bitwise reproducibility: repeated runs and 1, 2 and 3 threads give the same output bytes, on
// every compute path; one sequence (batch 1) spreads over every thread through the split-K chunks.
#include <gtest/gtest.h>

#include <cstdlib>

#include "kernels/dispatch.hpp"
#include "ops/compress_attention_infer/cases.hpp"

using namespace nsa_test;

namespace {

std::pair<std::vector<unsigned char>, std::vector<unsigned char>> run(const CattnInferCase& c, int threads) {
    opennsa::set_num_threads(threads);
    CattnInferTensors t(c);
    opennsa::compress_attention_infer(t.args(), t.params);
    return {t.out.bytes, t.topk.bytes};
}

CattnInferCase determinism_case(DType dtype, bool drafts) {
    CattnInferCase c;
    c.dtype = dtype;
    c.N1 = 16;
    c.N2 = 2;
    c.Dk = 40;
    c.Dv = 24;
    c.l = 8;
    c.d = 4;
    c.sel = 16;
    c.k = 6;
    c.P = 16;
    c.mask = c.pass_q_lens = drafts;
    c.q_lens = drafts ? std::vector<std::int64_t>{3, 2} : std::vector<std::int64_t>{1};
    c.raw_lens = drafts ? std::vector<std::int64_t>{4000, 900} : std::vector<std::int64_t>{};
    c.c_lens = drafts ? std::vector<std::int64_t>{compressed_tokens(4000, 8, 4), compressed_tokens(900, 8, 4)}
                      : std::vector<std::int64_t>{1500};
    c.seed = case_seed(drafts ? 31 : 30);
    return c;
}

}  // namespace

TEST(InferDeterminism, SameBitsAcrossRunsAndThreadCounts) {
    for (const char* path : {"portable", "avx2"}) {
        if (std::string(path) == "avx2" && !opennsa::detail::cpu_has_avx2()) continue;
        ::setenv("OPENNSA_KERNEL", path, 1);
        for (DType dtype : {DType::bf16, DType::f16, DType::f32})
            for (bool drafts : {false, true}) {
                const CattnInferCase c = determinism_case(dtype, drafts);
                SCOPED_TRACE(std::string(path) + " " + c.describe());
                const auto one = run(c, 1);
                EXPECT_EQ(one, run(c, 1)) << "two runs differ";
                EXPECT_EQ(one, run(c, 2)) << "2 threads differ from 1";
                EXPECT_EQ(one, run(c, 3)) << "3 threads differ from 1";
            }
    }
    ::unsetenv("OPENNSA_KERNEL");
    opennsa::set_num_threads(0);
}
