// Bitwise reproducibility: thread counts 1, 2, 3 and repeated runs give the same cache bytes on
// every path; the task list depends on the problem alone.
#include <gtest/gtest.h>

#include "ops/compress_with_cache/cases.hpp"
#include "ops/compress_with_cache/plan.hpp"

using namespace cwc_test;
using nsa_test::case_seed;

namespace {

std::vector<unsigned char> run(const Case& c, int threads) {
    opennsa::set_num_threads(threads);
    Tensors t(c);
    opennsa::compress_with_cache(t.args(), t.params);
    return t.cache.bytes;
}

}  // namespace

TEST(CompressWithCacheDeterminism, SameBitsAcrossRunsAndThreadCounts) {
    for (const char* path : kernel_paths()) {
        PathScope scope(path);
        for (DType dtype : {DType::bf16, DType::f16, DType::f32, DType::f64})
            for (std::int64_t B : {1, 7}) {
                Case c;
                c.dtype = dtype;
                c.N = 3, c.D = 197, c.l = 32, c.d = 16, c.P = 16;  // several D blocks per head
                c.lens.clear();
                for (std::int64_t b = 0; b < B; ++b) c.lens.push_back(32 + 16 * b);
                c.input = Layout::padded;
                c.seed = case_seed(900 + static_cast<std::uint64_t>(B));
                SCOPED_TRACE(std::string(path) + " " + c.describe());
                const auto one = run(c, 1);
                for (int threads : {1, 2, 3}) EXPECT_TRUE(run(c, threads) == one) << "threads " << threads;
            }
    }
    opennsa::set_num_threads(0);
}

// Batch 1 still has work for several cores: heads times blocks of D.
TEST(CompressWithCacheDeterminism, TasksSplitHeadsAndD) {
    namespace cwc = opennsa::detail::compress_with_cache;
    cwc::Problem p;
    p.N = 4, p.D = 192, p.l = 32;
    p.triggered = {0};
    EXPECT_EQ(cwc::task_count(p), 4 * 3);
    const cwc::Task last = cwc::task_at(p, 11);
    EXPECT_EQ(last.head, 3);
    EXPECT_EQ(last.e0, 128);
    EXPECT_EQ(last.e1, 192);
    p.D = 65, p.triggered = {2, 5};
    EXPECT_EQ(cwc::task_count(p), 2 * 4 * 2);
    const cwc::Task t = cwc::task_at(p, 9);  // second batch, head 0, second block
    EXPECT_EQ(t.batch, 5);
    EXPECT_EQ(t.head, 0);
    EXPECT_EQ(t.e0, 64);
    EXPECT_EQ(t.e1, 65);
}
