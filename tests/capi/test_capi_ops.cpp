// The operators through the C API: the same bits as the native API (fp16, bf16, fp32; strided views
// with offsets; varlen), repeatable executors, concurrent host threads, T1 = 0, and every error
// path with its status, its message and untouched outputs.
#include <functional>
#include <thread>

#include "capi_util.hpp"

using namespace capi_test;
using nsa_test::Case;

namespace {

Case small_case(DType dtype, bool transposed, bool varlen) {
    Case c;
    c.dtype = dtype;
    c.N1 = 4;
    c.N2 = 2;
    c.Dk = 24;
    c.Dv = 16;
    c.bs = 8;
    c.C = 4;
    c.q_lens = varlen ? std::vector<std::int64_t>{17, 0, 30} : std::vector<std::int64_t>{40};
    c.kv_lens = varlen ? std::vector<std::int64_t>{20, 5, 30} : std::vector<std::int64_t>{40};
    c.pad_q = varlen ? 3 : 0;
    c.varlen = varlen;
    c.transposed = transposed;
    c.seed = nsa_test::case_seed(static_cast<std::uint64_t>(dtype) * 4 + transposed * 2 + varlen);
    return c;
}

// Forward and backward through both APIs on the same data; every output must match bit for bit.
void expect_same_bits_as_native(const Case& c) {
    SCOPED_TRACE(c.describe());
    Tensors host(c);
    {
        AclProblem acl(host);
        opennsa::forward(host.forward_args(), host.params);
        ASSERT_EQ(run_forward(acl), ACLNN_SUCCESS) << aclGetRecentErrMsg();
        EXPECT_TRUE(acl.out.same_bits(host.out, "attentionOut"));
        EXPECT_TRUE(acl.smax.same_bits(host.smax, "softmaxMaxOut"));
        EXPECT_TRUE(acl.ssum.same_bits(host.ssum, "softmaxSumOut"));
    }
    AclProblem acl(host);  // now holds the forward's outputs as backward inputs
    opennsa::backward(host.backward_args(), host.params);
    ASSERT_EQ(run_backward(acl), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    EXPECT_TRUE(acl.dq.same_bits(host.dq, "dqOut"));
    EXPECT_TRUE(acl.dk.same_bits(host.dk, "dkOut"));
    EXPECT_TRUE(acl.dv.same_bits(host.dv, "dvOut"));
}

TEST(CapiOps, SameBitsAsNativeApi) {
    for (DType dtype : {DType::f16, DType::bf16, DType::f32})
        for (bool transposed : {false, true})
            for (bool varlen : {false, true}) expect_same_bits_as_native(small_case(dtype, transposed, varlen));
}

TEST(CapiOps, SameBitsAsNativeApiOnRandomCases) {
    std::mt19937_64 rng(nsa_test::case_seed(77));
    for (int i = 0; i < 6; ++i) expect_same_bits_as_native(nsa_test::random_case(rng, i % 2 ? DType::bf16 : DType::f16));
}

TEST(CapiOps, RepeatableExecutorRunsUntilDestroyed) {
    Tensors host(small_case(DType::bf16, true, true));
    opennsa::forward(host.forward_args(), host.params);
    AclProblem acl(host);
    opennsa::backward(host.backward_args(), host.params);
    std::uint64_t ws_size = 0;
    aclOpExecutor* ex = nullptr;
    ASSERT_EQ(acl.backward_workspace(&ws_size, &ex), ACLNN_SUCCESS);
    ASSERT_EQ(aclSetAclOpExecutorRepeatable(ex), ACLNN_SUCCESS);
    void* ws = nullptr;
    ASSERT_EQ(aclrtMalloc(&ws, ws_size + 1, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
    for (int run = 0; run < 3; ++run) {
        acl.dq.poison();
        acl.dk.poison();
        acl.dv.poison();
        ASSERT_EQ(aclnnNsaSelectedAttentionGrad(ws, ws_size, ex, nullptr), ACLNN_SUCCESS) << aclGetRecentErrMsg();
        EXPECT_TRUE(acl.dq.same_bits(host.dq, "dqOut"));
        EXPECT_TRUE(acl.dk.same_bits(host.dk, "dkOut"));
        EXPECT_TRUE(acl.dv.same_bits(host.dv, "dvOut"));
    }
    ASSERT_EQ(aclDestroyAclOpExecutor(ex), ACLNN_SUCCESS);
    EXPECT_EQ(aclnnNsaSelectedAttentionGrad(ws, ws_size, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("executor"));
    EXPECT_EQ(aclDestroyAclOpExecutor(ex), ACLNN_ERR_PARAM_INVALID);
    EXPECT_EQ(aclDestroyAclOpExecutor(nullptr), ACLNN_ERR_PARAM_NULLPTR);
    aclrtFree(ws);
}

TEST(CapiOps, ConcurrentThreadsOnStreamsGiveIdenticalBits) {
    ASSERT_EQ(aclInit(nullptr), ACL_SUCCESS);
    Tensors host(small_case(DType::bf16, false, true));
    opennsa::forward(host.forward_args(), host.params);
    opennsa::backward(host.backward_args(), host.params);
    constexpr int kThreads = 3;
    std::vector<std::unique_ptr<AclProblem>> problems;
    for (int i = 0; i < kThreads; ++i) problems.push_back(std::make_unique<AclProblem>(host));
    std::vector<aclnnStatus> status(kThreads, -1);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i)
        threads.emplace_back([&, i] {
            aclrtStream stream = nullptr;
            if (aclrtCreateStream(&stream) != ACL_SUCCESS) return;
            aclnnStatus s = ACLNN_SUCCESS;
            for (int round = 0; round < 4 && s == ACLNN_SUCCESS; ++round) {
                s = run_forward(*problems[i], stream);
                if (s == ACLNN_SUCCESS) s = run_backward(*problems[i], stream);
            }
            if (aclrtSynchronizeStream(stream) != ACL_SUCCESS || aclrtDestroyStream(stream) != ACL_SUCCESS)
                s = ACLNN_ERR_INNER;
            status[static_cast<std::size_t>(i)] = s;
        });
    for (auto& th : threads) th.join();
    for (int i = 0; i < kThreads; ++i) {
        SCOPED_TRACE(i);
        AclProblem& a = *problems[static_cast<std::size_t>(i)];
        ASSERT_EQ(status[static_cast<std::size_t>(i)], ACLNN_SUCCESS);
        EXPECT_TRUE(a.out.same_bits(host.out, "attentionOut"));
        EXPECT_TRUE(a.smax.same_bits(host.smax, "softmaxMaxOut"));
        EXPECT_TRUE(a.dq.same_bits(host.dq, "dqOut"));
        EXPECT_TRUE(a.dk.same_bits(host.dk, "dkOut"));
        EXPECT_TRUE(a.dv.same_bits(host.dv, "dvOut"));
    }
    EXPECT_EQ(aclFinalize(), ACL_SUCCESS);
}

TEST(CapiOps, NoQueryTokensNeedsNoWorkspaceAndZeroesKeyGrads) {
    Case c = small_case(DType::f16, false, false);
    c.q_lens = {0};
    Tensors host(c);
    AclProblem acl(host);
    std::uint64_t ws = 123;
    aclOpExecutor* ex = nullptr;
    ASSERT_EQ(acl.forward_workspace(&ws, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    EXPECT_EQ(ws, 0u);
    EXPECT_EQ(aclnnNsaSelectedAttention(nullptr, 0, ex, nullptr), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    ws = 123;
    ASSERT_EQ(acl.backward_workspace(&ws, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    EXPECT_EQ(ws, 0u);
    EXPECT_EQ(aclnnNsaSelectedAttentionGrad(nullptr, 0, ex, nullptr), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    for (AclMirror* m : {&acl.dk, &acl.dv}) {
        const std::size_t n = static_cast<std::size_t>(c.T2() * c.N2 * (m == &acl.dk ? c.Dk : c.Dv));
        for (std::size_t i = 0; i < n * 2; ++i) ASSERT_EQ(m->payload()[i], 0) << "byte " << i;
    }
}

// --- errors ------------------------------------------------------------------------------------

class CapiErrors : public ::testing::Test {
protected:
    CapiErrors() : host(small_case(DType::f16, true, true)) {
        opennsa::forward(host.forward_args(), host.params);  // backward inputs
    }
    void SetUp() override {
        acl = std::make_unique<AclProblem>(host);
        for (AclMirror* m : outputs()) m->poison();
    }
    std::vector<AclMirror*> outputs() { return {&acl->out, &acl->smax, &acl->ssum, &acl->dq, &acl->dk, &acl->dv}; }
    ::testing::AssertionResult outputs_untouched() {
        const char* names[] = {"attentionOut", "softmaxMaxOut", "softmaxSumOut", "dqOut", "dkOut", "dvOut"};
        auto outs = outputs();
        for (std::size_t i = 0; i < outs.size(); ++i)
            if (auto r = outs[i]->untouched(names[i]); !r) return r;
        return ::testing::AssertionSuccess();
    }
    // A fresh tensor like `like` but with another dtype or shape.
    aclTensor* make(std::vector<std::int64_t> dims, aclDataType dtype) {
        own.emplace_back(aclCreateTensor(dims.data(), dims.size(), dtype, nullptr, 0, ACL_FORMAT_ND, nullptr, 0,
                                         scratch.data()));
        return own.back().get();
    }
    struct Destroy {
        void operator()(aclTensor* t) const { aclDestroyTensor(t); }
    };

    Tensors host;
    std::unique_ptr<AclProblem> acl;
    std::vector<unsigned char> scratch = std::vector<unsigned char>(1 << 20, 0);
    std::vector<std::unique_ptr<aclTensor, Destroy>> own;
    std::uint64_t ws = 0;
    aclOpExecutor* ex = nullptr;
};

TEST_F(CapiErrors, NullPointersAreNamed) {
    AclProblem& a = *acl;
    const opennsa::Params& p = host.params;
    EXPECT_EQ(aclnnNsaSelectedAttentionGetWorkspaceSize(nullptr, a.k.get(), a.v.get(), a.topk.get(), nullptr, a.cq,
                                                        a.ckv, p.scale, p.head_num, a.layout, p.sparse_mode,
                                                        p.block_size, p.block_count, a.smax.get(), a.ssum.get(),
                                                        a.out.get(), &ws, &ex),
              ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("query"));
    EXPECT_TRUE(message_names("aclnnNsaSelectedAttentionGetWorkspaceSize"));
    EXPECT_EQ(aclnnNsaSelectedAttentionGradGetWorkspaceSize(
                  a.q.get(), a.k.get(), a.v.get(), a.out.get(), a.dO.get(), a.smax.get(), a.ssum.get(), a.topk.get(),
                  a.cq, a.ckv, nullptr, p.scale, p.block_size, p.block_count, p.head_num, a.layout, p.sparse_mode,
                  a.dq.get(), nullptr, a.dv.get(), &ws, &ex),
              ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("dkOut"));
    EXPECT_EQ(a.forward_workspace(nullptr, &ex), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("workspaceSize"));
    EXPECT_EQ(a.backward_workspace(&ws, nullptr), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("executor"));
    EXPECT_EQ(aclnnNsaSelectedAttention(nullptr, 0, nullptr, nullptr), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("executor"));
    a.layout[0] = '\0';
    EXPECT_EQ(aclnnNsaSelectedAttentionGetWorkspaceSize(a.q.get(), a.k.get(), a.v.get(), a.topk.get(), nullptr, a.cq,
                                                        a.ckv, p.scale, p.head_num, nullptr, p.sparse_mode,
                                                        p.block_size, p.block_count, a.smax.get(), a.ssum.get(),
                                                        a.out.get(), &ws, &ex),
              ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("inputLayout"));
    EXPECT_TRUE(outputs_untouched());
}

TEST_F(CapiErrors, WrongLayoutDtypeShapeAndParameters) {
    AclProblem& a = *acl;
    std::memcpy(a.layout, "BSN", 4);
    EXPECT_EQ(a.forward_workspace(&ws, &ex), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("inputLayout"));
    std::memcpy(a.layout, "TND", 4);

    const opennsa::Params& p = host.params;
    const std::int64_t T1 = host.c.T1(), N1 = host.c.N1;
    auto fwd = [&](const aclTensor* q, const aclTensor* topk, std::int64_t head_num, std::int64_t sparse_mode) {
        return aclnnNsaSelectedAttentionGetWorkspaceSize(q, a.k.get(), a.v.get(), topk, nullptr, a.cq, a.ckv, p.scale,
                                                         head_num, a.layout, sparse_mode, p.block_size, p.block_count,
                                                         a.smax.get(), a.ssum.get(), a.out.get(), &ws, &ex);
    };
    EXPECT_EQ(fwd(make({T1, N1, host.c.Dk}, ACL_INT64), a.topk.get(), p.head_num, p.sparse_mode), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("query"));
    EXPECT_TRUE(message_names("aclDataType 9 (ACL_INT64) is not supported"));
    EXPECT_EQ(fwd(make({T1, N1, host.c.Dk}, ACL_BF16), a.topk.get(), p.head_num, p.sparse_mode), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("key"));  // q bf16, k fp16
    EXPECT_EQ(fwd(make({T1, N1, host.c.Dk, 1, 1}, ACL_FLOAT16), a.topk.get(), p.head_num, p.sparse_mode),
              ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("query"));
    EXPECT_EQ(fwd(make({T1, N1, host.c.Dk + 1}, ACL_FLOAT16), a.topk.get(), p.head_num, p.sparse_mode),
              ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("key"));
    EXPECT_EQ(fwd(a.q.get(), make({T1, host.c.N2, host.c.C}, ACL_INT64), p.head_num, p.sparse_mode),
              ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("topkIndices"));
    EXPECT_EQ(fwd(a.q.get(), a.topk.get(), p.head_num + 1, p.sparse_mode), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("headNum"));
    EXPECT_EQ(fwd(a.q.get(), a.topk.get(), p.head_num, 1), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("sparseMode"));

    // A view that reaches past the storage it declares.
    const std::int64_t dims[3] = {T1, N1, host.c.Dk}, storage[1] = {T1 * N1 * host.c.Dk - 1};
    own.emplace_back(aclCreateTensor(dims, 3, ACL_FLOAT16, nullptr, 0, ACL_FORMAT_ND, storage, 1, scratch.data()));
    EXPECT_EQ(fwd(own.back().get(), a.topk.get(), p.head_num, p.sparse_mode), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("storage"));

    // Bad cumulative lengths.
    const std::int64_t bad[2] = {30, 20};
    aclIntArray* seq = aclCreateIntArray(bad, 2);
    EXPECT_EQ(aclnnNsaSelectedAttentionGetWorkspaceSize(a.q.get(), a.k.get(), a.v.get(), a.topk.get(), nullptr, seq,
                                                        seq, p.scale, p.head_num, a.layout, p.sparse_mode,
                                                        p.block_size, p.block_count, a.smax.get(), a.ssum.get(),
                                                        a.out.get(), &ws, &ex),
              ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("actualSeqQLenOptional"));
    aclDestroyIntArray(seq);
    EXPECT_TRUE(outputs_untouched());
}

// A launch consumes a non-repeatable executor whatever the outcome (CANN's rule): each rejected
// launch below spends a fresh executor, leaves the outputs alone, and a second launch of the same
// executor is "not a live executor". A repeatable one survives rejected launches.
TEST_F(CapiErrors, RejectedLaunchesConsumeTheExecutor) {
    ASSERT_EQ(acl->backward_workspace(&ws, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    ASSERT_GT(ws, 0u);
    aclDestroyAclOpExecutor(ex);
    void* buf = nullptr;
    ASSERT_EQ(aclrtMalloc(&buf, ws + 64, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
    int not_a_stream = 0;
    struct Misuse {
        std::function<aclnnStatus(aclOpExecutor*)> launch;
        aclnnStatus status;
        const char* message;
    };
    const std::vector<Misuse> misuses = {
        {[&](aclOpExecutor* e) { return aclnnNsaSelectedAttentionGrad(buf, ws - 1, e, nullptr); },
         ACLNN_ERR_PARAM_INVALID, "workspaceSize"},
        {[&](aclOpExecutor* e) { return aclnnNsaSelectedAttentionGrad(nullptr, ws, e, nullptr); },
         ACLNN_ERR_PARAM_NULLPTR, "workspace"},
        {[&](aclOpExecutor* e) { return aclnnNsaSelectedAttentionGrad(static_cast<char*>(buf) + 8, ws, e, nullptr); },
         ACLNN_ERR_PARAM_INVALID, "aligned"},
        {[&](aclOpExecutor* e) { return aclnnNsaSelectedAttention(buf, ws, e, nullptr); }, ACLNN_ERR_PARAM_INVALID,
         "aclnnNsaSelectedAttentionGradGetWorkspaceSize"},
        {[&](aclOpExecutor* e) { return aclnnNsaSelectedAttentionGrad(buf, ws, e, &not_a_stream); },
         ACLNN_ERR_PARAM_INVALID, "stream"},
    };
    for (const Misuse& m : misuses) {
        ASSERT_EQ(acl->backward_workspace(&ws, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
        EXPECT_EQ(m.launch(ex), m.status);
        EXPECT_TRUE(message_names(m.message));
        EXPECT_TRUE(outputs_untouched());
        EXPECT_EQ(aclnnNsaSelectedAttentionGrad(buf, ws, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
        EXPECT_TRUE(message_names("not a live executor"));
        EXPECT_EQ(aclDestroyAclOpExecutor(ex), ACLNN_ERR_PARAM_INVALID);
        EXPECT_TRUE(outputs_untouched());
    }
    // A repeatable executor stays live through rejected launches and then runs.
    ASSERT_EQ(acl->backward_workspace(&ws, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    ASSERT_EQ(aclSetAclOpExecutorRepeatable(ex), ACLNN_SUCCESS);
    for (const Misuse& m : misuses) EXPECT_EQ(m.launch(ex), m.status);
    EXPECT_TRUE(outputs_untouched());
    EXPECT_EQ(aclnnNsaSelectedAttentionGrad(buf, ws, ex, nullptr), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    EXPECT_EQ(aclDestroyAclOpExecutor(ex), ACLNN_SUCCESS);
    aclrtFree(buf);
}

TEST_F(CapiErrors, TopkOutOfRangeIsReportedByTheLaunch) {
    // Row 0 of batch 0, kv head 1, slot 2: past the batch's 3 key blocks (S2 = 20, bs = 8).
    const std::size_t at = host.topk.offset_bytes(0, 1, 2);
    const std::int32_t bad = 3;
    std::memcpy(acl->topk.payload() + at, &bad, sizeof bad);
    for (bool backward : {false, true}) {
        ASSERT_EQ(backward ? acl->backward_workspace(&ws, &ex) : acl->forward_workspace(&ws, &ex), ACLNN_SUCCESS);
        void* buf = nullptr;
        ASSERT_EQ(aclrtMalloc(&buf, ws + 1, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
        EXPECT_EQ(backward ? aclnnNsaSelectedAttentionGrad(buf, ws, ex, nullptr)
                           : aclnnNsaSelectedAttention(buf, ws, ex, nullptr),
                  ACLNN_ERR_PARAM_INVALID);
        EXPECT_TRUE(message_names("topkIndices[0, 1, 2] = 3"));
        EXPECT_TRUE(outputs_untouched());
        // The failed launch still spent the executor.
        EXPECT_EQ(aclDestroyAclOpExecutor(ex), ACLNN_ERR_PARAM_INVALID);
        aclrtFree(buf);
    }
}

TEST_F(CapiErrors, MessagesAreKeptPerThread) {
    EXPECT_EQ(acl->forward_workspace(nullptr, &ex), ACLNN_ERR_PARAM_NULLPTR);
    std::string other;
    std::thread([&] {
        EXPECT_EQ(aclrtSetDevice(5), ACL_ERROR_INVALID_PARAM);
        other = aclGetRecentErrMsg();
    }).join();
    EXPECT_TRUE(message_names("workspaceSize"));
    EXPECT_NE(other.find("deviceId"), std::string::npos) << other;
}

}  // namespace
