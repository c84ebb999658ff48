// Runtime contexts (aclrtCreateContext, aclrtDestroyContext, aclrtSetCurrentContext,
// aclrtGetCurrentContext): CANN's documented behaviour on the one host device, bad handles, and
// the per-thread current context.
#include <atomic>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "capi_util.hpp"

using capi_test::message_names;

namespace {

// A value no call may write: outputs of failed calls must keep it.
aclrtContext untouched_marker() { return reinterpret_cast<aclrtContext>(static_cast<std::uintptr_t>(0x5EED)); }

aclError current(aclrtContext* out) { return aclrtGetCurrentContext(out); }

TEST(CapiContext, CreateNeedsAclInit) {
    aclrtContext c = untouched_marker();
    EXPECT_EQ(aclrtCreateContext(&c, 0), ACL_ERROR_UNINITIALIZE);
    EXPECT_TRUE(message_names("aclInit"));
    EXPECT_EQ(c, untouched_marker());
}

class CapiContextInit : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_EQ(aclInit(nullptr), ACL_SUCCESS); }
    void TearDown() override { EXPECT_EQ(aclFinalize(), ACL_SUCCESS); }
};

TEST_F(CapiContextInit, NoCurrentContextUntilOneIsMade) {
    // (A fresh thread, so the test does not depend on what earlier tests left on the main thread.)
    std::thread fresh([] {
        aclrtContext c = untouched_marker();
        EXPECT_EQ(current(&c), ACL_ERROR_RT_CONTEXT_NULL);
        EXPECT_TRUE(message_names("no current context"));
        EXPECT_EQ(c, untouched_marker());
    });
    fresh.join();
}

TEST_F(CapiContextInit, CreatedContextBecomesCurrentAndSetSwitches) {
    aclrtContext a = nullptr, b = nullptr, got = nullptr;
    ASSERT_EQ(aclrtCreateContext(&a, 0), ACL_SUCCESS);
    ASSERT_NE(a, nullptr);
    ASSERT_EQ(current(&got), ACL_SUCCESS);
    EXPECT_EQ(got, a);  // CANN: creating binds the new context to the calling thread
    ASSERT_EQ(aclrtCreateContext(&b, 0), ACL_SUCCESS);
    EXPECT_NE(a, b);
    ASSERT_EQ(current(&got), ACL_SUCCESS);
    EXPECT_EQ(got, b);
    ASSERT_EQ(aclrtSetCurrentContext(a), ACL_SUCCESS);
    ASSERT_EQ(current(&got), ACL_SUCCESS);
    EXPECT_EQ(got, a);
    ASSERT_EQ(aclrtSetCurrentContext(a), ACL_SUCCESS);  // setting the current one again is fine
    EXPECT_EQ(aclrtDestroyContext(b), ACL_SUCCESS);     // not current: a stays current
    ASSERT_EQ(current(&got), ACL_SUCCESS);
    EXPECT_EQ(got, a);
    EXPECT_EQ(aclrtDestroyContext(a), ACL_SUCCESS);
}

TEST_F(CapiContextInit, DestroyingTheCurrentContextClearsIt) {
    aclrtContext c = nullptr;
    ASSERT_EQ(aclrtCreateContext(&c, 0), ACL_SUCCESS);
    ASSERT_EQ(aclrtDestroyContext(c), ACL_SUCCESS);
    aclrtContext got = untouched_marker();
    EXPECT_EQ(current(&got), ACL_ERROR_RT_CONTEXT_NULL);
    EXPECT_EQ(got, untouched_marker());
}

TEST_F(CapiContextInit, DestroyedContextIsInvalidEverywhere) {
    aclrtContext c = nullptr;
    ASSERT_EQ(aclrtCreateContext(&c, 0), ACL_SUCCESS);
    ASSERT_EQ(aclrtDestroyContext(c), ACL_SUCCESS);
    EXPECT_EQ(aclrtDestroyContext(c), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("already destroyed"));
    EXPECT_EQ(aclrtSetCurrentContext(c), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("aclrtSetCurrentContext"));
    EXPECT_TRUE(message_names("not a live context"));
}

TEST_F(CapiContextInit, HandlesAreNeverReused) {
    // A later context never gets a destroyed one's handle, so a stale handle stays detectable.
    std::set<aclrtContext> seen;
    for (int i = 0; i < 500; ++i) {
        aclrtContext c = nullptr;
        ASSERT_EQ(aclrtCreateContext(&c, 0), ACL_SUCCESS);
        ASSERT_TRUE(seen.insert(c).second) << "handle " << c << " handed out twice";
        ASSERT_EQ(aclrtDestroyContext(c), ACL_SUCCESS);
    }
    for (aclrtContext c : seen) ASSERT_EQ(aclrtSetCurrentContext(c), ACL_ERROR_INVALID_PARAM);
}

TEST_F(CapiContextInit, BadArgumentsAreErrorsNotCrashes) {
    aclrtContext c = untouched_marker();
    EXPECT_EQ(aclrtCreateContext(nullptr, 0), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("context is a null pointer"));
    EXPECT_EQ(aclrtCreateContext(&c, 1), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("deviceId = 1"));
    EXPECT_EQ(aclrtCreateContext(&c, -1), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("deviceId = -1"));
    EXPECT_EQ(c, untouched_marker());
    EXPECT_EQ(aclrtDestroyContext(nullptr), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("aclrtDestroyContext: context is a null pointer"));
    EXPECT_EQ(aclrtSetCurrentContext(nullptr), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("aclrtSetCurrentContext: context is a null pointer"));
    EXPECT_EQ(aclrtGetCurrentContext(nullptr), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("aclrtGetCurrentContext: context is a null pointer"));

    // Handles that were never contexts: a stream, a stack address, a heap address.
    aclrtStream s = nullptr;
    ASSERT_EQ(aclrtCreateStream(&s), ACL_SUCCESS);
    EXPECT_EQ(aclrtDestroyContext(s), ACL_ERROR_INVALID_PARAM);
    EXPECT_EQ(aclrtSetCurrentContext(s), ACL_ERROR_INVALID_PARAM);
    int local = 0;
    EXPECT_EQ(aclrtDestroyContext(&local), ACL_ERROR_INVALID_PARAM);
    std::vector<char> heap(64);
    EXPECT_EQ(aclrtSetCurrentContext(heap.data()), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("not a live context"));
    EXPECT_EQ(aclrtDestroyStream(s), ACL_SUCCESS);
    std::thread fresh([] {  // no failed call made anything current (on a thread that had nothing)
        aclrtContext got = untouched_marker();
        EXPECT_NE(aclrtCreateContext(nullptr, 0), ACL_SUCCESS);
        EXPECT_NE(aclrtSetCurrentContext(nullptr), ACL_SUCCESS);
        EXPECT_EQ(current(&got), ACL_ERROR_RT_CONTEXT_NULL);
    });
    fresh.join();
}

TEST_F(CapiContextInit, AddressOfTheHandleIsRejectedAndTheContextSurvives) {
    // CANN's own example programs clean up with aclrtDestroyContext(&context) where context is an
    // aclrtContext, i.e. they pass the address of the handle (it converts to void*). That must be
    // a reported error, not a crash, and the real context must stay usable.
    aclrtContext context = nullptr;
    ASSERT_EQ(aclrtCreateContext(&context, 0), ACL_SUCCESS);
    aclrtContext* address_of_handle = &context;
    EXPECT_EQ(aclrtDestroyContext(address_of_handle), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("not a live context"));
    aclrtContext got = nullptr;
    ASSERT_EQ(current(&got), ACL_SUCCESS);
    EXPECT_EQ(got, context);
    EXPECT_EQ(aclrtDestroyContext(context), ACL_SUCCESS);
}

TEST_F(CapiContextInit, SetDeviceBindsTheDefaultContext) {
    ASSERT_EQ(aclrtSetDevice(0), ACL_SUCCESS);
    aclrtContext dflt = nullptr;
    ASSERT_EQ(current(&dflt), ACL_SUCCESS);
    ASSERT_NE(dflt, nullptr);
    EXPECT_EQ(aclrtDestroyContext(dflt), ACL_ERROR_INVALID_PARAM);  // CANN: the default context is not destroyable
    EXPECT_TRUE(message_names("default context"));

    aclrtContext explicit_ctx = nullptr, got = nullptr;
    ASSERT_EQ(aclrtCreateContext(&explicit_ctx, 0), ACL_SUCCESS);
    EXPECT_NE(explicit_ctx, dflt);
    ASSERT_EQ(current(&got), ACL_SUCCESS);
    EXPECT_EQ(got, explicit_ctx);
    ASSERT_EQ(aclrtSetDevice(0), ACL_SUCCESS);  // does not take the explicit context away
    ASSERT_EQ(current(&got), ACL_SUCCESS);
    EXPECT_EQ(got, explicit_ctx);
    ASSERT_EQ(aclrtSetCurrentContext(dflt), ACL_SUCCESS);
    ASSERT_EQ(current(&got), ACL_SUCCESS);
    EXPECT_EQ(got, dflt);
    ASSERT_EQ(aclrtDestroyContext(explicit_ctx), ACL_SUCCESS);

    // Two SetDevice calls: the default context lives until the second reset.
    ASSERT_EQ(aclrtResetDevice(0), ACL_SUCCESS);
    ASSERT_EQ(current(&got), ACL_SUCCESS);
    EXPECT_EQ(got, dflt);
    ASSERT_EQ(aclrtResetDevice(0), ACL_SUCCESS);
    EXPECT_EQ(current(&got), ACL_ERROR_RT_CONTEXT_NULL);
    EXPECT_TRUE(message_names("destroyed (or its device reset)"));
    EXPECT_EQ(aclrtSetCurrentContext(dflt), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("default context"));
}

TEST_F(CapiContextInit, StreamsAndMemoryDoNotNeedAContext) {
    // A context is only a handle: streams, memory and operators work with or without one, and
    // keep working after the context they were made under is destroyed.
    aclrtContext c = nullptr;
    ASSERT_EQ(aclrtCreateContext(&c, 0), ACL_SUCCESS);
    aclrtStream s = nullptr;
    ASSERT_EQ(aclrtCreateStream(&s), ACL_SUCCESS);
    void* p = nullptr;
    ASSERT_EQ(aclrtMalloc(&p, 256, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
    ASSERT_EQ(aclrtDestroyContext(c), ACL_SUCCESS);
    EXPECT_EQ(aclrtMemsetAsync(p, 256, 7, 256, s), ACL_SUCCESS);
    EXPECT_EQ(aclrtSynchronizeStream(s), ACL_SUCCESS);
    EXPECT_EQ(static_cast<unsigned char*>(p)[255], 7);
    EXPECT_EQ(aclrtFree(p), ACL_SUCCESS);
    EXPECT_EQ(aclrtDestroyStream(s), ACL_SUCCESS);
}

TEST_F(CapiContextInit, ContextsOutliveFinalizeAsHandles) {
    // aclFinalize resets the device (so the default context goes) but, as streams do, explicit
    // contexts stay valid handles until destroyed.
    aclrtContext c = nullptr;
    ASSERT_EQ(aclrtCreateContext(&c, 0), ACL_SUCCESS);
    ASSERT_EQ(aclFinalize(), ACL_SUCCESS);
    EXPECT_EQ(aclrtSetCurrentContext(c), ACL_SUCCESS);
    EXPECT_EQ(aclrtDestroyContext(c), ACL_SUCCESS);
    ASSERT_EQ(aclInit(nullptr), ACL_SUCCESS);  // for TearDown
}

// --- threads ---------------------------------------------------------------------------------

TEST_F(CapiContextInit, CurrentContextIsPerThread) {
    aclrtContext mine = nullptr;
    ASSERT_EQ(aclrtCreateContext(&mine, 0), ACL_SUCCESS);

    aclrtContext made_there = nullptr;
    std::thread other([&] {
        aclrtContext got = untouched_marker();
        EXPECT_EQ(current(&got), ACL_ERROR_RT_CONTEXT_NULL);  // a new thread has none of its own
        EXPECT_TRUE(message_names("no current context"));     // and its own error message
        EXPECT_EQ(aclrtSetCurrentContext(mine), ACL_SUCCESS);  // contexts may be shared by threads
        EXPECT_EQ(current(&got), ACL_SUCCESS);
        EXPECT_EQ(got, mine);
        EXPECT_EQ(aclrtCreateContext(&made_there, 0), ACL_SUCCESS);
        EXPECT_EQ(current(&got), ACL_SUCCESS);
        EXPECT_EQ(got, made_there);
    });
    other.join();

    aclrtContext got = nullptr;
    ASSERT_EQ(current(&got), ACL_SUCCESS);
    EXPECT_EQ(got, mine);  // untouched by what the other thread did
    EXPECT_EQ(aclrtDestroyContext(made_there), ACL_SUCCESS);  // any thread may destroy it
    EXPECT_EQ(aclrtDestroyContext(mine), ACL_SUCCESS);
}

TEST_F(CapiContextInit, DestroyOnAnotherThreadClearsItThere) {
    aclrtContext c = nullptr;
    ASSERT_EQ(aclrtCreateContext(&c, 0), ACL_SUCCESS);
    std::promise<void> bound, destroyed;
    std::future<void> destroyed_signal = destroyed.get_future();
    aclError after = ACL_SUCCESS;
    aclrtContext got_after = untouched_marker();
    std::thread holder([&] {
        EXPECT_EQ(aclrtSetCurrentContext(c), ACL_SUCCESS);
        bound.set_value();
        destroyed_signal.wait();
        after = current(&got_after);
    });
    bound.get_future().wait();
    EXPECT_EQ(aclrtDestroyContext(c), ACL_SUCCESS);
    destroyed.set_value();
    holder.join();
    EXPECT_EQ(after, ACL_ERROR_RT_CONTEXT_NULL);
    EXPECT_EQ(got_after, untouched_marker());
}

TEST_F(CapiContextInit, ConcurrentCreateSetGetDestroy) {
    // Threads churn contexts at once; each must always see its own current context, and no handle
    // may be handed out twice. (Runs under TSan in scripts/test.sh.)
    constexpr int kThreads = 6, kRounds = 300;
    std::mutex mu;
    std::set<aclrtContext> all;
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&] {
            std::vector<aclrtContext> made;
            for (int r = 0; r < kRounds; ++r) {
                aclrtContext a = nullptr, b = nullptr, got = nullptr;
                if (aclrtCreateContext(&a, 0) != ACL_SUCCESS || aclrtCreateContext(&b, 0) != ACL_SUCCESS) {
                    ++failures;
                    return;
                }
                if (aclrtSetCurrentContext(a) != ACL_SUCCESS || current(&got) != ACL_SUCCESS || got != a) ++failures;
                if (aclrtDestroyContext(a) != ACL_SUCCESS || current(&got) != ACL_ERROR_RT_CONTEXT_NULL) ++failures;
                if (aclrtSetCurrentContext(b) != ACL_SUCCESS || current(&got) != ACL_SUCCESS || got != b) ++failures;
                if (aclrtDestroyContext(b) != ACL_SUCCESS) ++failures;
                made.push_back(a);
                made.push_back(b);
            }
            std::lock_guard lock(mu);
            for (aclrtContext c : made)
                if (!all.insert(c).second) ++failures;
        });
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(all.size(), static_cast<std::size_t>(kThreads * kRounds * 2));
}

TEST_F(CapiContextInit, CannMultiThreadPattern) {
    // The usual CANN pattern: the main thread sets the device and creates a context; workers make
    // it current and launch the operator on their own streams.
    ASSERT_EQ(aclrtSetDevice(0), ACL_SUCCESS);
    aclrtContext shared = nullptr;
    ASSERT_EQ(aclrtCreateContext(&shared, 0), ACL_SUCCESS);
    std::atomic<int> failures{0};
    std::vector<std::thread> workers;
    for (int w = 0; w < 3; ++w)
        workers.emplace_back([&] {
            aclrtContext got = nullptr;
            aclrtStream s = nullptr;
            void* p = nullptr;
            if (aclrtSetCurrentContext(shared) != ACL_SUCCESS || current(&got) != ACL_SUCCESS || got != shared ||
                aclrtCreateStream(&s) != ACL_SUCCESS || aclrtMalloc(&p, 64, ACL_MEM_MALLOC_HUGE_FIRST) != ACL_SUCCESS ||
                aclrtMemsetAsync(p, 64, 1, 64, s) != ACL_SUCCESS || aclrtSynchronizeStream(s) != ACL_SUCCESS ||
                aclrtFree(p) != ACL_SUCCESS || aclrtDestroyStream(s) != ACL_SUCCESS)
                ++failures;
        });
    for (auto& th : workers) th.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(aclrtDestroyContext(shared), ACL_SUCCESS);
    EXPECT_EQ(aclrtResetDevice(0), ACL_SUCCESS);
}

}  // namespace
