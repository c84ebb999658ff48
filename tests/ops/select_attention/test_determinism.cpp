// Bitwise reproducibility: repeated runs and every thread count give the same output bytes.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "core/threading.hpp"
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

// Two varlen batches, GQA 8/2, Dk != Dv: enough tasks that every worker claims some.
Case varlen_case(opennsa::DType dtype, std::uint64_t seed) {
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
    c.seed = case_seed(seed);
    return c;
}

}  // namespace

TEST(Determinism, SameBitsAcrossRunsAndThreadCounts) {
    for (auto dtype : {opennsa::DType::bf16, opennsa::DType::f16, opennsa::DType::f32}) {
        Case c = varlen_case(dtype, 77);
        c.pad_q = 3;
        c.duplicate = 0.3;
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

namespace {

// A host that lends its threads the way the PyTorch extension lends torch's: run() starts one
// thread per worker (all at once, so the region really runs concurrently) and records what it ran.
struct FakeHost {
    static inline std::atomic<int> available{3};
    static inline std::atomic<int> regions{0}, bodies{0}, max_workers{0};

    static int get_available() { return available.load(); }
    static void run(int workers, void (*body)(void*, int), void* ctx) {
        regions.fetch_add(1);
        int seen = max_workers.load();
        while (workers > seen && !max_workers.compare_exchange_weak(seen, workers)) {}
        std::vector<std::thread> threads;
        for (int w = 0; w < workers; ++w)
            threads.emplace_back([&, w] {
                bodies.fetch_add(1);
                body(ctx, w);
            });
        for (auto& t : threads) t.join();
    }
    static void reset() { regions = bodies = max_workers = 0; }
};

}  // namespace

TEST(Determinism, HostThreadsRunTheRegionsWithTheSameBits) {
    const Case c = varlen_case(opennsa::DType::bf16, 78);
    const Outputs own = run(c, 1);
    const opennsa::HostThreads host{&FakeHost::get_available, &FakeHost::run};
    opennsa::set_host_threads(&host);

    // The host has 3 threads, the library is set to 8: regions get min(8, 3) = 3 workers.
    FakeHost::reset();
    FakeHost::available = 3;
    EXPECT_TRUE(run(c, 8) == own);
    EXPECT_EQ(opennsa::detail::thread_count(), 3);
    EXPECT_GT(FakeHost::regions.load(), 0);
    EXPECT_EQ(FakeHost::max_workers.load(), 3);
    EXPECT_LE(FakeHost::bodies.load(), 3 * FakeHost::regions.load());  // fewer where a region has < 3 tasks

    // The library set to 2 on a host of 3: 2 workers.
    FakeHost::reset();
    EXPECT_TRUE(run(c, 2) == own);
    EXPECT_EQ(FakeHost::max_workers.load(), 2);

    // A host with one thread free (inside its own parallel region, say): the library's own pool.
    FakeHost::reset();
    FakeHost::available = 1;
    EXPECT_TRUE(run(c, 2) == own);
    EXPECT_EQ(FakeHost::regions.load(), 0);

    // Removed again: the own pool, and an incomplete host counts as none.
    FakeHost::available = 3;
    opennsa::set_host_threads(nullptr);
    FakeHost::reset();
    EXPECT_TRUE(run(c, 3) == own);
    const opennsa::HostThreads half{&FakeHost::get_available, nullptr};
    opennsa::set_host_threads(&half);
    EXPECT_TRUE(run(c, 3) == own);
    EXPECT_EQ(FakeHost::regions.load(), 0);
    opennsa::set_host_threads(nullptr);
    opennsa::set_num_threads(0);
}

// fork() copies only the calling thread: a child that inherits the pool's bookkeeping but not its
// workers would wait for them forever. Not run under TSan (its runtime does not support threads
// after a multithreaded fork).
TEST(PoolAfterFork, ChildAndParentRunParallelWork) {
    const Case c = varlen_case(opennsa::DType::f32, 79);
    const Outputs parent = run(c, 2);  // the pool has its worker now
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        alarm(60);  // a hang ends the child with SIGALRM
        const bool same = run(c, 2) == parent && run(c, 3) == parent;
        _exit(same ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "the child hung or crashed: signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    EXPECT_EQ(WEXITSTATUS(status), 0) << "the child computed other bits";
    EXPECT_TRUE(run(c, 2) == parent);  // and the parent's pool still works
    opennsa::set_num_threads(0);
}
