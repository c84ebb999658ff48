// Bitwise reproducibility: every thread count (1, 2, 3) and repeated runs give the same output
// bytes, on every path; and the backward's task plan depends on the problem alone.
#include <gtest/gtest.h>

#include "ops/compress/cases.hpp"
#include "ops/compress/plan.hpp"

using namespace compress_test;
using nsa_test::case_seed;

namespace {

struct Outputs {
    std::vector<unsigned char> out, dx, dw;
    bool operator==(const Outputs&) const = default;
};

Outputs run(const Case& c, int threads) {
    opennsa::set_num_threads(threads);
    Tensors t(c);
    opennsa::compress(t.forward_args(), t.params);
    opennsa::compress_backward(t.backward_args(), t.params);
    return {t.output.bytes, t.input_grad.bytes, t.weight_grad.bytes};
}

}  // namespace

TEST(CompressDeterminism, SameBitsAcrossRunsAndThreadCounts) {
    for (const char* path : kernel_paths()) {
        PathScope scope(path);
        for (DType dtype : {DType::bf16, DType::f16, DType::f32, DType::f64}) {
            Case c;
            c.dtype = dtype;
            c.N = 3, c.D = 37, c.l = 12, c.d = 5;
            c.lens = {700, 0, 9, 650};  // many forward and backward tasks, partials across batches
            c.pad = 5;
            c.input = Layout::gapped;
            c.seed = case_seed(600);
            SCOPED_TRACE(std::string(path) + " " + c.describe());
            const Outputs one = run(c, 1);
            for (int threads : {1, 2, 3}) EXPECT_TRUE(run(c, threads) == one) << "threads " << threads;
        }
    }
    opennsa::set_num_threads(0);
}

// Partials stay within the budget (tasks grow instead) and are never sized by a window that no
// batch holds.
TEST(CompressDeterminism, BackwardPlanDependsOnTheProblemAlone) {
    namespace cmp = opennsa::detail::compress;
    cmp::Problem p;
    p.T = 100000, p.N = 8, p.l = 32768, p.d = 16, p.Tc = 1;
    cmp::BackwardPlan plan = cmp::backward_plan(p);
    EXPECT_EQ(plan.partial_rows, p.l);
    EXPECT_LE(plan.tasks * p.l * p.N, std::max(cmp::kPartialElements, p.l * p.N));
    EXPECT_GE(plan.rows_per_task, cmp::kInputRowsPerTask);
    EXPECT_GE(plan.tasks * plan.rows_per_task, p.T);
    p.l = 32, p.N = 4;
    plan = cmp::backward_plan(p);
    EXPECT_EQ(plan.rows_per_task, cmp::kInputRowsPerTask);
    EXPECT_EQ(plan.tasks, (p.T + 63) / 64);
    p.Tc = 0, p.l = std::int64_t{1} << 40;
    plan = cmp::backward_plan(p);
    EXPECT_EQ(plan.partial_rows, 0);
}
