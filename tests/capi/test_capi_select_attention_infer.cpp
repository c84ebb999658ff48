// aclnnNsaSelectedAttentionInfer through the C API, under both header names: the same bits as the
// native API (fp16, bf16; BSND, BSH, TND; draft tokens; strided views with offsets), a repeatable
// executor, and the error paths with their status, message and untouched output (metadata errors
// from GetWorkspaceSize, top-k and block-table contents from the launch).
#include "aclnnop/aclnn_nsa_select_attention_infer.h"
#include "aclnnop/aclnn_nsa_selected_attention_infer.h"
#include "capi_util.hpp"
#include "ops/select_attention_infer/cases.hpp"

using namespace capi_test;
using nsa_test::SelInferCase;
using nsa_test::SelInferTensors;

namespace {

struct AclInfer {
    SelInferTensors& t;
    AclMirror q, k, v, topk, table, out;
    aclIntArray* q_lens = nullptr;
    aclIntArray* kv_lens = nullptr;
    char layout[8] = {};

    explicit AclInfer(SelInferTensors& host)
        : t(host), q(host.q, 1), k(host.k, 2), v(host.v, 3), topk(host.topk, 4), table(host.table, 5), out(host.out, 6) {
        const auto& p = host.params;
        if (p.actual_q_seq_len) q_lens = aclCreateIntArray(p.actual_q_seq_len->data(), p.actual_q_seq_len->size());
        kv_lens = aclCreateIntArray(p.actual_kv_seq_len->data(), p.actual_kv_seq_len->size());
        std::snprintf(layout, sizeof layout, "%s", p.layout.c_str());
    }
    ~AclInfer() {
        aclDestroyIntArray(q_lens);
        aclDestroyIntArray(kv_lens);
    }
    aclnnStatus prepare(std::uint64_t* ws, aclOpExecutor** ex, const aclTensor* query = nullptr, char* lay = nullptr,
                        const aclIntArray* kv = nullptr) {
        const auto& p = t.params;
        return aclnnNsaSelectedAttentionInferGetWorkspaceSize(
            query ? query : q.get(), k.get(), v.get(), topk.get(), nullptr, table.get(), q_lens, kv ? kv : kv_lens,
            lay ? lay : layout, p.head_num, p.key_value_head_num, p.select_block_size, p.select_block_count,
            p.page_block_size, p.scale, 0, out.get(), ws, ex);
    }
    aclnnStatus run() {
        return two_phase([&](std::uint64_t* w, aclOpExecutor** e) { return prepare(w, e); }, aclnnNsaSelectedAttentionInfer);
    }
};

SelInferCase capi_case(DType dtype, const char* layout, bool drafts, int storage) {
    SelInferCase c;
    c.dtype = dtype;
    c.layout = layout;
    c.N1 = 8;
    c.N2 = 2;
    c.Dk = 24;
    c.Dv = 16;
    c.sel = 16;
    c.k = 5;
    c.P = 16;
    c.kv_lens = {90, 17, 130};
    c.q_lens = drafts ? std::vector<std::int64_t>{3, 1, 2} : std::vector<std::int64_t>{1, 1, 1};
    c.pass_q_lens = drafts;
    c.storage = storage;
    c.seed = nsa_test::case_seed(static_cast<std::uint64_t>(dtype) * 16 + std::uint64_t(drafts) * 4 + std::uint64_t(storage));
    return c;
}

}  // namespace

TEST(CapiSelectAttentionInfer, SameBitsAsNativeApi) {
    for (DType dtype : {DType::f16, DType::bf16})
        for (const char* layout : {"BSND", "BSH", "TND"})
            for (bool drafts : {false, true})
                for (int storage : {0, 1}) {
                    SelInferCase c = capi_case(dtype, layout, drafts, storage);
                    SCOPED_TRACE(c.describe());
                    SelInferTensors host(c);
                    AclInfer acl(host);  // mirrors the poisoned output
                    opennsa::select_attention_infer(host.args(), host.params);
                    ASSERT_EQ(acl.run(), ACLNN_SUCCESS) << aclGetRecentErrMsg();
                    EXPECT_TRUE(acl.out.same_bits(host.out, "output"));
                }
}

TEST(CapiSelectAttentionInfer, RepeatableExecutorRunsUntilDestroyed) {
    SelInferTensors host(capi_case(DType::bf16, "BSND", false, 0));
    AclInfer acl(host);
    opennsa::select_attention_infer(host.args(), host.params);
    std::uint64_t ws_size = 0;
    aclOpExecutor* ex = nullptr;
    ASSERT_EQ(acl.prepare(&ws_size, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    ASSERT_EQ(aclSetAclOpExecutorRepeatable(ex), ACLNN_SUCCESS);
    void* ws = nullptr;
    if (ws_size > 0) {
        ASSERT_EQ(aclrtMalloc(&ws, ws_size, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
    }
    for (int i = 0; i < 3; ++i) {
        acl.out.poison();
        ASSERT_EQ(aclnnNsaSelectedAttentionInfer(ws, ws_size, ex, nullptr), ACLNN_SUCCESS) << aclGetRecentErrMsg();
        EXPECT_TRUE(acl.out.same_bits(host.out, "output"));
    }
    EXPECT_EQ(aclDestroyAclOpExecutor(ex), ACLNN_SUCCESS);
    EXPECT_EQ(aclnnNsaSelectedAttentionInfer(ws, ws_size, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
    if (ws) aclrtFree(ws);
}

TEST(CapiSelectAttentionInfer, ErrorsAreNamedAndWriteNothing) {
    SelInferCase c = capi_case(DType::bf16, "BSND", true, 1);
    c.kv_lens = {90, 17, 130};
    c.k = 12;  // batch 0: one row of 12 slots -> few rows, tasks by chunk: a workspace
    c.sel = 64;
    SelInferTensors host(c);
    AclInfer a(host);
    a.out.poison();
    std::uint64_t ws = 0;
    aclOpExecutor* ex = nullptr;
    struct Call {
        const char* what;
        aclnnStatus status;
        std::function<aclnnStatus()> call;
    };
    SelInferTensors fp32_host([&] {
        SelInferCase f = c;
        f.dtype = DType::f32;
        return f;
    }());
    AclMirror fp32_query(fp32_host.q, 1);
    char bnsd[5] = "BNSD";
    const auto& p = host.params;
    const std::vector<Call> calls = {
        {"query", ACLNN_ERR_PARAM_NULLPTR, [&] {
             return aclnnNsaSelectedAttentionInferGetWorkspaceSize(
                 nullptr, a.k.get(), a.v.get(), a.topk.get(), nullptr, a.table.get(), a.q_lens, a.kv_lens, a.layout,
                 p.head_num, p.key_value_head_num, p.select_block_size, p.select_block_count, p.page_block_size, p.scale,
                 0, a.out.get(), &ws, &ex);
         }},
        {"blockTableOptional", ACLNN_ERR_PARAM_NULLPTR, [&] {
             return aclnnNsaSelectedAttentionInferGetWorkspaceSize(
                 a.q.get(), a.k.get(), a.v.get(), a.topk.get(), nullptr, nullptr, a.q_lens, a.kv_lens, a.layout,
                 p.head_num, p.key_value_head_num, p.select_block_size, p.select_block_count, p.page_block_size, p.scale,
                 0, a.out.get(), &ws, &ex);
         }},
        {"layoutOptional", ACLNN_ERR_PARAM_NULLPTR, [&] {
             return aclnnNsaSelectedAttentionInferGetWorkspaceSize(
                 a.q.get(), a.k.get(), a.v.get(), a.topk.get(), nullptr, a.table.get(), a.q_lens, a.kv_lens, nullptr,
                 p.head_num, p.key_value_head_num, p.select_block_size, p.select_block_count, p.page_block_size, p.scale,
                 0, a.out.get(), &ws, &ex);
         }},
        {"actualKvSeqLenOptional", ACLNN_ERR_PARAM_NULLPTR, [&] {
             return aclnnNsaSelectedAttentionInferGetWorkspaceSize(
                 a.q.get(), a.k.get(), a.v.get(), a.topk.get(), nullptr, a.table.get(), a.q_lens, nullptr, a.layout,
                 p.head_num, p.key_value_head_num, p.select_block_size, p.select_block_count, p.page_block_size, p.scale,
                 0, a.out.get(), &ws, &ex);
         }},
        {"workspaceSize", ACLNN_ERR_PARAM_NULLPTR, [&] {
             return aclnnNsaSelectedAttentionInferGetWorkspaceSize(
                 a.q.get(), a.k.get(), a.v.get(), a.topk.get(), nullptr, a.table.get(), a.q_lens, a.kv_lens, a.layout,
                 p.head_num, p.key_value_head_num, p.select_block_size, p.select_block_count, p.page_block_size, p.scale,
                 0, a.out.get(), nullptr, &ex);
         }},
        {"executor", ACLNN_ERR_PARAM_NULLPTR, [&] {
             return aclnnNsaSelectedAttentionInferGetWorkspaceSize(
                 a.q.get(), a.k.get(), a.v.get(), a.topk.get(), nullptr, a.table.get(), a.q_lens, a.kv_lens, a.layout,
                 p.head_num, p.key_value_head_num, p.select_block_size, p.select_block_count, p.page_block_size, p.scale,
                 0, a.out.get(), &ws, nullptr);
         }},
        {"query: dtype fp32", ACLNN_ERR_PARAM_INVALID, [&] { return a.prepare(&ws, &ex, fp32_query.get()); }},
        {"layoutOptional = \"BNSD\"", ACLNN_ERR_PARAM_INVALID, [&] { return a.prepare(&ws, &ex, nullptr, bnsd); }},
    };
    for (const Call& call : calls) {
        SCOPED_TRACE(call.what);
        EXPECT_EQ(call.call(), call.status);
        EXPECT_TRUE(message_names(call.what));
        EXPECT_TRUE(message_names("aclnnNsaSelectedAttentionInferGetWorkspaceSize"));
    }
    // Content errors pass phase one and fail the launch, before anything is written.
    auto* slot = reinterpret_cast<std::int32_t*>(a.topk.payload()) + host.topk.offset(host.topk_index(2, 1, 1, 4));
    const std::int32_t saved = *slot;
    *slot = 3;  // batch 2: 130 tokens in blocks of 64 -> [-1, 3)
    ASSERT_EQ(a.prepare(&ws, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    void* buf = nullptr;
    if (ws > 0) {
        ASSERT_EQ(aclrtMalloc(&buf, ws, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
    }
    EXPECT_EQ(aclnnNsaSelectedAttentionInfer(buf, ws, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("topkIndices[2, 1, 1, 4] = 3 is out of range [-1, 3)"));
    EXPECT_TRUE(message_names("aclnnNsaSelectedAttentionInfer"));
    *slot = saved;
    auto* entry = reinterpret_cast<std::int32_t*>(a.table.payload()) + host.table.offset({1, 1});
    *entry = 1000;  // batch 1 has 17 tokens: 2 pages, column 1 is read
    ASSERT_EQ(a.prepare(&ws, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    EXPECT_EQ(aclnnNsaSelectedAttentionInfer(buf, ws, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("blockTableOptional[1, 1] = 1000"));
    *entry = host.pages[1][1];
    // Too small a workspace, then a consumed executor.
    ASSERT_EQ(a.prepare(&ws, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    ASSERT_GT(ws, 0u);
    EXPECT_EQ(aclnnNsaSelectedAttentionInfer(buf, ws - 1, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("workspaceSize"));
    EXPECT_EQ(aclnnNsaSelectedAttentionInfer(buf, ws, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("not a live executor"));
    if (buf) aclrtFree(buf);
    EXPECT_TRUE(a.out.untouched("output"));
}
