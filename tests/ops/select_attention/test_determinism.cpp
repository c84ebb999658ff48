// Bitwise reproducibility: repeated runs and every thread count give the same output bytes.
#include <gtest/gtest.h>

#include <cstdlib>

#include "ops/select_attention/cases.hpp"

using namespace nsa_test;

namespace {

struct Outputs {
    std::vector<unsigned char> out, smax, ssum, dq, dk, dv;
    bool operator==(const Outputs&) const = default;
};

Outputs run(const Case& c, int threads) {
    opennsa::set_num_threads(threads);
    Tensors t(c);
    opennsa::forward(t.forward_args(), t.params);
    Outputs o{t.out.bytes, t.smax.bytes, t.ssum.bytes, {}, {}, {}};
    opennsa::backward(t.backward_args(), t.params);
    o.dq = t.dq.bytes;
    o.dk = t.dk.bytes;
    o.dv = t.dv.bytes;
    return o;
}

}  // namespace

TEST(Determinism, SameBitsAcrossRunsAndThreadCounts) {
    for (auto dtype : {opennsa::DType::bf16, opennsa::DType::f16, opennsa::DType::f32}) {
        Case c;
        c.dtype = dtype;
        c.N1 = 8;
        c.N2 = 2;
        c.Dk = 40;
        c.Dv = 24;
        c.bs = 16;
        c.C = 6;
        c.q_lens = {300, 150};
        c.kv_lens = {300, 170};
        c.varlen = true;
        c.pad_q = 3;
        c.duplicate = 0.3;
        c.seed = case_seed(77);
        const Outputs one = run(c, 1);
        for (int threads : {1, 2, 3, 8}) EXPECT_TRUE(run(c, threads) == one) << "threads " << threads << " " << c.describe();
    }
    opennsa::set_num_threads(0);
}

TEST(Determinism, ThreadCountComesFromEnvironmentOrSetter) {
    ::setenv("OPENNSA_NUM_THREADS", "3", 1);
    opennsa::set_num_threads(0);
    EXPECT_EQ(opennsa::num_threads(), 3);
    opennsa::set_num_threads(2);
    EXPECT_EQ(opennsa::num_threads(), 2);
    ::setenv("OPENNSA_NUM_THREADS", "not a number", 1);
    opennsa::set_num_threads(0);
    EXPECT_GE(opennsa::num_threads(), 1);
    ::unsetenv("OPENNSA_NUM_THREADS");
    opennsa::set_num_threads(0);
}
