// aclnnNsaCompressAttentionInfer through the C API: the same bits as the native API (fp16, bf16;
// TND and BSND; strided views with offsets; draft tokens; shuffled pages), block-table entries read
// by the launch (not by GetWorkspaceSize), repeatable executors, and the error paths with their
// status, message and untouched outputs.
#include "aclnnop/aclnn_nsa_compress_attention_infer.h"
#include "capi_util.hpp"
#include "ops/compress_attention_infer/cases.hpp"

using namespace capi_test;
using nsa_test::CattnInferCase;
using nsa_test::CattnInferTensors;
using opennsa::TensorView;

namespace {

// A host tensor seen through another view of its buffer (a BSND or rank-4 view of the same bytes).
HostTensor seen_as(const HostTensor& h, const TensorView& v) {
    HostTensor x = h;
    x.view = v;  // v points into h's bytes: the same place in the copy (AclMirror reads the start from it)
    x.view.data = x.bytes.data() + (static_cast<const unsigned char*>(v.data) - h.bytes.data());
    return x;
}

struct AclInfer {
    CattnInferTensors& t;
    AclMirror q, k, v, table, out, topk;
    std::unique_ptr<AclMirror> mask;
    aclIntArray* cq = nullptr;
    aclIntArray* ccmp = nullptr;
    aclIntArray* csel = nullptr;
    char layout[5] = "TND";

    static HostTensor table_tensor(const CattnInferTensors& host) {
        HostTensor h;
        h.bytes.resize(host.table.size() * 4);
        std::memcpy(h.bytes.data(), host.table.data(), h.bytes.size());
        h.view = host.tablev;
        h.view.data = h.bytes.data();  // contiguous from the start of its own copy
        return h;
    }
    static HostTensor mask_tensor(const CattnInferTensors& host) {
        HostTensor h;
        h.bytes = host.mask_bytes;
        h.view = host.maskv;
        h.view.data = h.bytes.data();
        return h;
    }

    explicit AclInfer(CattnInferTensors& host)
        : t(host), q(seen_as(host.q, host.qv), 1), k(seen_as(host.key, host.keyv), 2), v(seen_as(host.value, host.valuev), 3),
          table(table_tensor(host), 4), out(seen_as(host.out, host.outv), 5), topk(seen_as(host.topk, host.topkv), 6) {
        if (host.c.mask) mask = std::make_unique<AclMirror>(mask_tensor(host), 0);
        const auto& p = host.params;
        if (p.q_seq_lens) cq = aclCreateIntArray(p.q_seq_lens->data(), p.q_seq_lens->size());
        ccmp = aclCreateIntArray(p.cmp_kv_seq_lens->data(), p.cmp_kv_seq_lens->size());
        if (p.sel_kv_seq_lens) csel = aclCreateIntArray(p.sel_kv_seq_lens->data(), p.sel_kv_seq_lens->size());
        std::strcpy(layout, p.layout.c_str());
    }
    ~AclInfer() {
        aclDestroyIntArray(cq);
        aclDestroyIntArray(ccmp);
        aclDestroyIntArray(csel);
    }
    const aclTensor* mask_or_null() const { return mask ? mask->get() : nullptr; }

    aclnnStatus prepare(std::uint64_t* ws, aclOpExecutor** ex) {
        const auto& p = t.params;
        return aclnnNsaCompressAttentionInferGetWorkspaceSize(
            q.get(), k.get(), v.get(), mask_or_null(), table.get(), cq, ccmp, csel, nullptr, p.head_num,
            p.key_value_head_num, p.select_block_size, p.select_block_count, p.compress_block_size, p.compress_stride,
            p.scale, layout, p.page_block_size, p.sparse_mode, out.get(), topk.get(), ws, ex);
    }
    aclnnStatus run() {
        return two_phase([&](std::uint64_t* w, aclOpExecutor** e) { return prepare(w, e); },
                         aclnnNsaCompressAttentionInfer);
    }
};

CattnInferCase capi_case(DType dtype, bool bsnd, bool drafts, bool transposed) {
    CattnInferCase c;
    c.dtype = dtype;
    c.bsnd = bsnd;
    c.N1 = 8;
    c.N2 = 2;
    c.Dk = 24;
    c.Dv = 16;
    c.l = 8;
    c.d = 4;
    c.sel = 16;
    c.k = 5;
    c.P = 16;
    c.mask = c.pass_q_lens = drafts;
    c.q_lens = drafts ? std::vector<std::int64_t>{3, 1, 2} : std::vector<std::int64_t>{1, 1, 1};
    c.raw_lens = {1500, 37, 300};
    c.c_lens.clear();
    for (auto L : c.raw_lens) c.c_lens.push_back(nsa_test::compressed_tokens(L, c.l, c.d));
    c.extra_q = bsnd && drafts ? 1 : 0;
    c.transposed = transposed;
    c.seed = nsa_test::case_seed(static_cast<std::uint64_t>(dtype) * 8 + bsnd * 4 + drafts * 2 + transposed);
    return c;
}

}  // namespace

TEST(CapiCompressAttentionInfer, SameBitsAsNativeApi) {
    for (DType dtype : {DType::f16, DType::bf16})
        for (bool bsnd : {false, true})
            for (bool drafts : {false, true})
                for (bool transposed : {false, true}) {
                    const CattnInferCase c = capi_case(dtype, bsnd, drafts, transposed);
                    SCOPED_TRACE(c.describe());
                    CattnInferTensors host(c);
                    AclInfer acl(host);  // mirrors of the poisoned outputs
                    opennsa::compress_attention_infer(host.args(), host.params);
                    ASSERT_EQ(acl.run(), ACLNN_SUCCESS) << aclGetRecentErrMsg();
                    EXPECT_TRUE(acl.out.same_bits(host.out, "output"));
                    EXPECT_TRUE(acl.topk.same_bits(host.topk, "topKOutput"));
                }
}

TEST(CapiCompressAttentionInfer, BlockTableIsReadByTheLaunch) {
    CattnInferTensors host(capi_case(DType::bf16, false, false, false));
    AclInfer a(host);
    a.out.poison();
    a.topk.poison();
    // An entry out of range: GetWorkspaceSize accepts it, the launch rejects it, nothing written.
    std::int32_t* entries = reinterpret_cast<std::int32_t*>(a.table.payload());
    const std::int32_t good = entries[0];
    entries[0] = 1 << 20;
    std::uint64_t ws = 0;
    aclOpExecutor* ex = nullptr;
    ASSERT_EQ(a.prepare(&ws, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    void* buf = nullptr;
    if (ws > 0) {
        ASSERT_EQ(aclrtMalloc(&buf, ws, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
    }
    EXPECT_EQ(aclnnNsaCompressAttentionInfer(buf, ws, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("blockTableOptional[0, 0] = 1048576 is not a page of key and value"));
    EXPECT_TRUE(message_names("aclnnNsaCompressAttentionInfer"));
    EXPECT_TRUE(a.out.untouched("output"));
    EXPECT_TRUE(a.topk.untouched("topKOutput"));
    // Fixed between the phases of a repeatable executor: the next launch reads the new contents.
    ASSERT_EQ(a.prepare(&ws, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    ASSERT_EQ(aclSetAclOpExecutorRepeatable(ex), ACLNN_SUCCESS);
    EXPECT_EQ(aclnnNsaCompressAttentionInfer(buf, ws, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
    entries[0] = good;
    opennsa::compress_attention_infer(host.args(), host.params);
    for (int run = 0; run < 2; ++run) {
        ASSERT_EQ(aclnnNsaCompressAttentionInfer(buf, ws, ex, nullptr), ACLNN_SUCCESS) << aclGetRecentErrMsg();
        EXPECT_TRUE(a.out.same_bits(host.out, "output"));
        EXPECT_TRUE(a.topk.same_bits(host.topk, "topKOutput"));
        a.out.poison();
    }
    EXPECT_EQ(aclDestroyAclOpExecutor(ex), ACLNN_SUCCESS);
    if (buf) aclrtFree(buf);
}

TEST(CapiCompressAttentionInfer, ErrorsAreNamedAndWriteNothing) {
    CattnInferTensors host(capi_case(DType::bf16, true, true, true));
    AclInfer a(host);
    a.out.poison();
    a.topk.poison();
    const auto& p = host.params;
    std::uint64_t ws = 0;
    aclOpExecutor* ex = nullptr;
    struct Call {
        const char* what;
        aclnnStatus status;
        std::function<aclnnStatus()> call;
    };
    auto with = [&](const aclTensor* q, const aclTensor* table, const aclIntArray* ccmp, char* layout,
                    std::int64_t stride, const aclTensor* out, std::uint64_t* wsp, aclOpExecutor** exp) {
        return aclnnNsaCompressAttentionInferGetWorkspaceSize(
            q, a.k.get(), a.v.get(), a.mask_or_null(), table, a.cq, ccmp, a.csel, nullptr, p.head_num,
            p.key_value_head_num, p.select_block_size, p.select_block_count, p.compress_block_size, stride, p.scale,
            layout, p.page_block_size, p.sparse_mode, out, a.topk.get(), wsp, exp);
    };
    char tnd[4] = "TND", bsh[4] = "BSH";
    // fp32 data is the native API's; through C, fp16 and bf16 only.
    CattnInferCase f32 = capi_case(DType::f32, true, true, false);
    CattnInferTensors host32(f32);
    AclInfer a32(host32);
    const std::vector<Call> calls = {
        {"query", ACLNN_ERR_PARAM_NULLPTR, [&] { return with(nullptr, a.table.get(), a.ccmp, a.layout, p.compress_stride, a.out.get(), &ws, &ex); }},
        {"blockTableOptional", ACLNN_ERR_PARAM_NULLPTR, [&] { return with(a.q.get(), nullptr, a.ccmp, a.layout, p.compress_stride, a.out.get(), &ws, &ex); }},
        {"actualCmpKvSeqLenOptional", ACLNN_ERR_PARAM_NULLPTR, [&] { return with(a.q.get(), a.table.get(), nullptr, a.layout, p.compress_stride, a.out.get(), &ws, &ex); }},
        {"layoutOptional", ACLNN_ERR_PARAM_NULLPTR, [&] { return with(a.q.get(), a.table.get(), a.ccmp, nullptr, p.compress_stride, a.out.get(), &ws, &ex); }},
        {"output", ACLNN_ERR_PARAM_NULLPTR, [&] { return with(a.q.get(), a.table.get(), a.ccmp, a.layout, p.compress_stride, nullptr, &ws, &ex); }},
        {"workspaceSize", ACLNN_ERR_PARAM_NULLPTR, [&] { return with(a.q.get(), a.table.get(), a.ccmp, a.layout, p.compress_stride, a.out.get(), nullptr, &ex); }},
        {"executor", ACLNN_ERR_PARAM_NULLPTR, [&] { return with(a.q.get(), a.table.get(), a.ccmp, a.layout, p.compress_stride, a.out.get(), &ws, nullptr); }},
        {"layoutOptional = \"BSH\"", ACLNN_ERR_PARAM_INVALID, [&] { return with(a.q.get(), a.table.get(), a.ccmp, bsh, p.compress_stride, a.out.get(), &ws, &ex); }},
        {"query: rank 4", ACLNN_ERR_PARAM_INVALID, [&] { return with(a.q.get(), a.table.get(), a.ccmp, tnd, p.compress_stride, a.out.get(), &ws, &ex); }},
        {"compressBlockStride = 0", ACLNN_ERR_PARAM_INVALID, [&] { return with(a.q.get(), a.table.get(), a.ccmp, a.layout, 0, a.out.get(), &ws, &ex); }},
        {"not supported by aclnnNsaCompressAttentionInfer", ACLNN_ERR_PARAM_INVALID, [&] { return a32.prepare(&ws, &ex); }},
    };
    for (const Call& c : calls) {
        SCOPED_TRACE(c.what);
        EXPECT_EQ(c.call(), c.status);
        EXPECT_TRUE(message_names(c.what));
        EXPECT_TRUE(message_names("aclnnNsaCompressAttentionInferGetWorkspaceSize"));
    }
    // A launch with too small a workspace is rejected before anything is written. Only the split-K
    // passes need a workspace: the portable path (aarch64, OPENNSA_KERNEL=portable) asks for none,
    // and then there is no size too small to try.
    ASSERT_EQ(a.prepare(&ws, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    if (ws > 0) {
        void* buf = nullptr;
        ASSERT_EQ(aclrtMalloc(&buf, ws, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
        EXPECT_EQ(aclnnNsaCompressAttentionInfer(buf, ws - 1, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
        EXPECT_TRUE(message_names("workspaceSize"));
        EXPECT_EQ(aclnnNsaCompressAttentionInfer(buf, ws, ex, nullptr), ACLNN_ERR_PARAM_INVALID);  // consumed
        EXPECT_TRUE(message_names("not a live executor"));
        aclrtFree(buf);
    } else {
        EXPECT_EQ(aclDestroyAclOpExecutor(ex), ACLNN_SUCCESS);
    }
    EXPECT_TRUE(a.out.untouched("output"));
    EXPECT_TRUE(a.topk.untouched("topKOutput"));
}
