// aclnnNsaCompressAttention through the C API: the same bits as the native API (fp16, bf16, fp32;
// strided views with offsets; varlen; masks; statistics in CANN's head-major layout), T1 = 0, and
// the error paths with their status, message and untouched outputs.
#include "aclnnop/aclnn_nsa_compress_attention.h"
#include "capi_util.hpp"
#include "ops/compress_attention/cases.hpp"

using namespace capi_test;
using nsa_test::CompressCase;
using nsa_test::CompressTensors;
using nsa_test::HostMask;

namespace {

// A host mask as an aclTensor over its own buffer (its strides, offset 0).
class AclMask {
public:
    explicit AclMask(const HostMask& m) {
        const std::int64_t storage[1] = {static_cast<std::int64_t>(m.bytes.size())};
        tensor_ = aclCreateTensor(m.view.shape, 2, acl_dtype(m.view.dtype), m.view.strides, 0, ACL_FORMAT_ND, storage,
                                  1, const_cast<unsigned char*>(m.bytes.data()));
    }
    AclMask(const AclMask&) = delete;
    AclMask& operator=(const AclMask&) = delete;
    ~AclMask() { aclDestroyTensor(tensor_); }
    aclTensor* get() const { return tensor_; }

private:
    aclTensor* tensor_ = nullptr;
};

struct AclCompress {
    CompressTensors& t;
    AclMirror q, k, v, out, topk, smax, ssum;
    std::unique_ptr<AclMask> mask, topk_mask;
    aclIntArray* cq = nullptr;
    aclIntArray* ckv = nullptr;
    aclIntArray* csel = nullptr;
    char layout[4] = "TND";

    explicit AclCompress(CompressTensors& host)
        : t(host), q(host.q, 1), k(host.k, 2), v(host.v, 3), out(host.out, 4), topk(host.topk, 5), smax(host.smax, 6),
          ssum(host.ssum, 7) {
        if (host.c.atten_mask) mask = std::make_unique<AclMask>(host.mask);
        if (host.c.forced > 0) topk_mask = std::make_unique<AclMask>(host.topk_mask);
        const auto& p = host.params;
        if (p.cu_seqlens_q) {
            cq = aclCreateIntArray(p.cu_seqlens_q->data(), p.cu_seqlens_q->size());
            ckv = aclCreateIntArray(p.cu_seqlens_cmp_kv->data(), p.cu_seqlens_cmp_kv->size());
            csel = aclCreateIntArray(p.cu_seqlens_sel_kv->data(), p.cu_seqlens_sel_kv->size());
        }
    }
    ~AclCompress() {
        aclDestroyIntArray(cq);
        aclDestroyIntArray(ckv);
        aclDestroyIntArray(csel);
    }
    const aclTensor* mask_tensor() const { return mask ? mask->get() : nullptr; }
    const aclTensor* topk_mask_tensor() const { return topk_mask ? topk_mask->get() : nullptr; }

    aclnnStatus prepare(std::uint64_t* ws, aclOpExecutor** ex) {
        const auto& p = t.params;
        return aclnnNsaCompressAttentionGetWorkspaceSize(
            q.get(), k.get(), v.get(), mask_tensor(), topk_mask_tensor(), cq, ckv, csel, p.scale, p.head_num, layout,
            p.sparse_mode, p.compress_block_size, p.compress_stride, p.select_block_size, p.select_block_count,
            smax.get(), ssum.get(), out.get(), topk.get(), ws, ex);
    }
    aclnnStatus run() {
        return two_phase([&](std::uint64_t* w, aclOpExecutor** e) { return prepare(w, e); }, aclnnNsaCompressAttention);
    }
    std::vector<AclMirror*> outputs() { return {&out, &topk, &smax, &ssum}; }
};

CompressCase capi_case(DType dtype, bool transposed, bool varlen, std::int64_t mode) {
    CompressCase c;
    c.dtype = dtype;
    c.N1 = 6;
    c.N2 = 2;
    c.Dk = 24;
    c.Dv = 16;
    c.l = 8;
    c.d = 4;
    c.sel = 16;
    c.k = 3;
    c.q_lens = varlen ? std::vector<std::int64_t>{37, 0, 52} : std::vector<std::int64_t>{64};
    c.c_lens.clear();
    for (auto s : c.q_lens) c.c_lens.push_back(nsa_test::compressed_count(s, c.l, c.d));
    c.pad_q = varlen ? 3 : 0;
    c.pad_kv = varlen ? 2 : 0;
    c.varlen = varlen;
    c.transposed = transposed;
    c.sparse_mode = mode;
    c.atten_mask = mode == 1;
    c.forced = 0.15;
    c.seed = nsa_test::case_seed(static_cast<std::uint64_t>(dtype) * 8 + transposed * 4 + varlen * 2 + (mode == 2));
    return c;
}

void expect_same_bits_as_native(const CompressCase& c) {
    SCOPED_TRACE(c.describe());
    ASSERT_FALSE(c.token_major) << "the C API writes CANN's head-major statistics";
    CompressTensors host(c);
    AclCompress acl(host);  // mirrors of the poisoned outputs
    opennsa::compress_attention(host.forward_args(), host.params);
    ASSERT_EQ(acl.run(), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    EXPECT_TRUE(acl.out.same_bits(host.out, "attentionOutOut"));
    EXPECT_TRUE(acl.topk.same_bits(host.topk, "topkIndicesOut"));
    EXPECT_TRUE(acl.smax.same_bits(host.smax, "softmaxMaxOut"));
    EXPECT_TRUE(acl.ssum.same_bits(host.ssum, "softmaxSumOut"));
}

}  // namespace

TEST(CapiCompressAttention, SameBitsAsNativeApi) {
    for (DType dtype : {DType::f16, DType::bf16, DType::f32})
        for (bool transposed : {false, true})
            for (bool varlen : {false, true})
                for (std::int64_t mode : {1, 2}) expect_same_bits_as_native(capi_case(dtype, transposed, varlen, mode));
}

TEST(CapiCompressAttention, SameBitsAsNativeApiOnRandomCases) {
    std::mt19937_64 rng(nsa_test::case_seed(78));
    for (int i = 0; i < 8; ++i) {
        CompressCase c = nsa_test::random_compress_case(rng, i % 2 ? DType::bf16 : DType::f16);
        c.token_major = false;
        expect_same_bits_as_native(c);
    }
}

TEST(CapiCompressAttention, NoQueryTokensNeedsNoWorkspace) {
    CompressCase c = capi_case(DType::f16, false, false, 2);
    c.q_lens = {0};
    CompressTensors host(c);
    AclCompress acl(host);
    std::uint64_t ws = 123;
    aclOpExecutor* ex = nullptr;
    ASSERT_EQ(acl.prepare(&ws, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    EXPECT_EQ(ws, 0u);
    EXPECT_EQ(aclnnNsaCompressAttention(nullptr, 0, ex, nullptr), ACLNN_SUCCESS) << aclGetRecentErrMsg();
}

TEST(CapiCompressAttention, ErrorsAreNamedAndWriteNothing) {
    CompressTensors host(capi_case(DType::bf16, true, true, 1));
    AclCompress a(host);
    for (AclMirror* m : a.outputs()) m->poison();
    const auto& p = host.params;
    std::uint64_t ws = 0;
    aclOpExecutor* ex = nullptr;
    struct Call {
        const char* what;
        aclnnStatus status;
        std::function<aclnnStatus()> call;
    };
    auto with = [&](const aclTensor* q, const aclTensor* mask, const aclTensor* topk, char* layout,
                    std::int64_t sparse_mode, std::int64_t stride, const aclIntArray* ckv) {
        return aclnnNsaCompressAttentionGetWorkspaceSize(
            q, a.k.get(), a.v.get(), mask, a.topk_mask_tensor(), a.cq, ckv, a.csel, p.scale, p.head_num, layout,
            sparse_mode, p.compress_block_size, stride, p.select_block_size, p.select_block_count, a.smax.get(),
            a.ssum.get(), a.out.get(), topk, &ws, &ex);
    };
    // A mask one column short of maxC, and lengths past T2.
    HostMask small_mask = HostMask::make(DType::u8, host.c.max_q(), host.c.max_c() - 1, 0);
    AclMask short_mask(small_mask);
    const std::int64_t past[3] = {9, 9, host.c.T2() + 1};
    aclIntArray* bad_ckv = aclCreateIntArray(past, 3);
    char bsnd[5] = "BSND";
    const std::vector<Call> calls = {
        {"query", ACLNN_ERR_PARAM_NULLPTR, [&] { return with(nullptr, a.mask_tensor(), a.topk.get(), a.layout, 1, p.compress_stride, a.ckv); }},
        {"topkIndicesOut", ACLNN_ERR_PARAM_NULLPTR, [&] { return with(a.q.get(), a.mask_tensor(), nullptr, a.layout, 1, p.compress_stride, a.ckv); }},
        {"inputLayout", ACLNN_ERR_PARAM_NULLPTR, [&] { return with(a.q.get(), a.mask_tensor(), a.topk.get(), nullptr, 1, p.compress_stride, a.ckv); }},
        {"inputLayout = \"BSND\"", ACLNN_ERR_PARAM_INVALID, [&] { return with(a.q.get(), a.mask_tensor(), a.topk.get(), bsnd, 1, p.compress_stride, a.ckv); }},
        {"sparseMode = 4", ACLNN_ERR_PARAM_INVALID, [&] { return with(a.q.get(), a.mask_tensor(), a.topk.get(), a.layout, 4, p.compress_stride, a.ckv); }},
        {"compressStride = 0", ACLNN_ERR_PARAM_INVALID, [&] { return with(a.q.get(), a.mask_tensor(), a.topk.get(), a.layout, 1, 0, a.ckv); }},
        {"attenMaskOptional", ACLNN_ERR_PARAM_INVALID, [&] { return with(a.q.get(), short_mask.get(), a.topk.get(), a.layout, 1, p.compress_stride, a.ckv); }},
        {"actualCmpSeqKvLenOptional", ACLNN_ERR_PARAM_INVALID, [&] { return with(a.q.get(), a.mask_tensor(), a.topk.get(), a.layout, 1, p.compress_stride, bad_ckv); }},
        {"workspaceSize", ACLNN_ERR_PARAM_NULLPTR, [&] {
             return aclnnNsaCompressAttentionGetWorkspaceSize(
                 a.q.get(), a.k.get(), a.v.get(), nullptr, nullptr, a.cq, a.ckv, a.csel, p.scale, p.head_num, a.layout, 1,
                 p.compress_block_size, p.compress_stride, p.select_block_size, p.select_block_count, a.smax.get(),
                 a.ssum.get(), a.out.get(), a.topk.get(), nullptr, &ex);
         }},
    };
    for (const Call& c : calls) {
        SCOPED_TRACE(c.what);
        EXPECT_EQ(c.call(), c.status);
        EXPECT_TRUE(message_names(c.what));
        EXPECT_TRUE(message_names("aclnnNsaCompressAttentionGetWorkspaceSize"));
    }
    aclDestroyIntArray(bad_ckv);
    // sparseMode 2 reads no mask: the short one is accepted there.
    ASSERT_EQ(with(a.q.get(), short_mask.get(), a.topk.get(), a.layout, 2, p.compress_stride, a.ckv), ACLNN_SUCCESS)
        << aclGetRecentErrMsg();
    aclDestroyAclOpExecutor(ex);
    // A launch with too small a workspace is rejected before anything is written.
    ASSERT_EQ(a.prepare(&ws, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    ASSERT_GT(ws, 0u);
    void* buf = nullptr;
    ASSERT_EQ(aclrtMalloc(&buf, ws, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
    EXPECT_EQ(aclnnNsaCompressAttention(buf, ws - 1, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("workspaceSize"));
    EXPECT_EQ(aclnnNsaCompressAttention(buf, ws, ex, nullptr), ACLNN_ERR_PARAM_INVALID);  // consumed
    EXPECT_TRUE(message_names("not a live executor"));
    aclrtFree(buf);
    const char* names[] = {"attentionOutOut", "topkIndicesOut", "softmaxMaxOut", "softmaxSumOut"};
    auto outs = a.outputs();
    for (std::size_t i = 0; i < outs.size(); ++i) EXPECT_TRUE(outs[i]->untouched(names[i]));
}
