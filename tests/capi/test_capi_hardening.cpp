// Regression tests of the hardening issue through the C API: sizes that used to wrap, values a C
// caller may pass that C++ must not load as an enum, pointer arithmetic on empty views, and
// misaligned data. Run under UBSan in CI (scripts/test.sh), which is what catches the last three.
#include <cstring>
#include <limits>

#include "aclnn/convert.hpp"
#include "capi_util.hpp"

using namespace capi_test;
using nsa_test::Case;

namespace {

// Defect 1 through phase one: a broadcast key/value of 2^58 rows over one 8-element buffer has a
// workspace that cannot be represented: GetWorkspaceSize fails with 161002, no executor.
TEST(CapiHardening, BroadcastKeysWorkspaceIsAnError) {
    std::vector<std::uint16_t> q(8, 0x3c00), kv(8, 0x3c00), out(8, 0xFFFF);
    std::vector<float> smax(8), ssum(8);
    std::int32_t topk = 0;
    const std::int64_t qshape[3] = {1, 1, 8}, qstride[3] = {8, 8, 1};
    const std::int64_t kshape[3] = {std::int64_t{1} << 58, 1, 8}, kstride[3] = {0, 0, 1};
    const std::int64_t tshape[3] = {1, 1, 1}, tstride[3] = {1, 1, 1};
    const std::int64_t sshape[3] = {1, 1, 8};
    const std::int64_t storage8[1] = {8}, storage1[1] = {1};
    aclTensor* tq = aclCreateTensor(qshape, 3, ACL_FLOAT16, qstride, 0, ACL_FORMAT_ND, storage8, 1, q.data());
    aclTensor* tk = aclCreateTensor(kshape, 3, ACL_FLOAT16, kstride, 0, ACL_FORMAT_ND, storage8, 1, kv.data());
    aclTensor* tt = aclCreateTensor(tshape, 3, ACL_INT32, tstride, 0, ACL_FORMAT_ND, storage1, 1, &topk);
    aclTensor* to = aclCreateTensor(qshape, 3, ACL_FLOAT16, qstride, 0, ACL_FORMAT_ND, storage8, 1, out.data());
    aclTensor* tm = aclCreateTensor(sshape, 3, ACL_FLOAT, nullptr, 0, ACL_FORMAT_ND, storage8, 1, smax.data());
    aclTensor* ts = aclCreateTensor(sshape, 3, ACL_FLOAT, nullptr, 0, ACL_FORMAT_ND, storage8, 1, ssum.data());
    char layout[] = "TND";
    std::uint64_t ws = 12345;
    aclOpExecutor* ex = nullptr;
    EXPECT_EQ(aclnnNsaSelectedAttentionGetWorkspaceSize(tq, tk, tk, tt, nullptr, nullptr, nullptr, 0.5, 1, layout, 0, 8,
                                                        1, tm, ts, to, &ws, &ex),
              ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("too large"));
    EXPECT_EQ(ex, nullptr);
    for (auto x : out) EXPECT_EQ(x, 0xFFFF);
    for (aclTensor* t : {tq, tk, tt, to, tm, ts}) aclDestroyTensor(t);
}

// Defect 4: an aclDataType outside the enum is read by its bytes, never loaded as the enum.
TEST(CapiHardening, DataTypesOutsideTheEnum) {
    aclDataType weird;
    const int raw = 12345;
    std::memcpy(&weird, &raw, sizeof raw);
    double x = 1.0;
    EXPECT_EQ(aclCreateScalar(&x, weird), nullptr);
    EXPECT_TRUE(message_names("dataType"));
    EXPECT_EQ(aclDataTypeSize(weird), 0u);
    // A tensor may record any value; an operator receiving it reports it.
    Case c;
    c.seed = nsa_test::case_seed(41);
    Tensors host(c);
    AclProblem a(host);
    const std::int64_t shape[3] = {host.q.view.shape[0], host.q.view.shape[1], host.q.view.shape[2]};
    aclTensor* bad = aclCreateTensor(shape, 3, weird, host.q.view.strides, 0, ACL_FORMAT_ND, nullptr, 0,
                                     host.q.bytes.data());
    ASSERT_NE(bad, nullptr);
    std::uint64_t ws = 0;
    aclOpExecutor* ex = nullptr;
    const opennsa::Params& p = host.params;
    EXPECT_EQ(aclnnNsaSelectedAttentionGetWorkspaceSize(bad, a.k.get(), a.v.get(), a.topk.get(), nullptr, a.cq, a.ckv,
                                                        p.scale, p.head_num, a.layout, p.sparse_mode, p.block_size,
                                                        p.block_count, a.smax.get(), a.ssum.get(), a.out.get(), &ws,
                                                        &ex),
              ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("12345"));
    aclDestroyTensor(bad);
}

// Defect 4: an empty view with an offset far outside any object (-2^61) forms no pointer from it.
// The long fuzz run of 2026-12-02 found the same with offsets whose byte count does not fit in
// int64 (INT64_MIN, INT64_MAX, -9223323597161099708 for fp16): rejected as "offset overflows int64
// bytes" although nothing is read through an empty view. Every such offset is accepted now.
TEST(CapiHardening, EmptyViewWithHugeOffset) {
    for (const std::int64_t offset : {-(std::int64_t{1} << 61), std::numeric_limits<std::int64_t>::min(),
                                      std::numeric_limits<std::int64_t>::max(), std::int64_t{-9223323597161099708}}) {
        SCOPED_TRACE(offset);
        Case c;
        c.seed = nsa_test::case_seed(42);
        c.dtype = opennsa::DType::f16;
        c.q_lens = {0};
        c.kv_lens = {5};
        Tensors host(c);
        AclProblem a(host);
        const std::int64_t shape[3] = {0, c.N1, c.Dk}, stride[3] = {c.N1 * c.Dk, c.Dk, 1};
        alignas(8) std::uint16_t cell = 0;
        aclTensor* q = aclCreateTensor(shape, 3, acl_dtype(c.dtype), stride, offset, ACL_FORMAT_ND, nullptr, 0, &cell);
        std::uint64_t ws = 1;
        aclOpExecutor* ex = nullptr;
        const opennsa::Params& p = host.params;
        // The other tensors have T1 = 0 rows too (q_lens = {0}); the call is valid and needs no workspace.
        EXPECT_EQ(aclnnNsaSelectedAttentionGetWorkspaceSize(q, a.k.get(), a.v.get(), a.topk.get(), nullptr, a.cq, a.ckv,
                                                            p.scale, p.head_num, a.layout, p.sparse_mode, p.block_size,
                                                            p.block_count, a.smax.get(), a.ssum.get(), a.out.get(), &ws,
                                                            &ex),
                  ACLNN_SUCCESS)
            << aclGetRecentErrMsg();
        EXPECT_EQ(ws, 0u);
        EXPECT_EQ(aclnnNsaSelectedAttention(nullptr, 0, ex, nullptr), ACLNN_SUCCESS) << aclGetRecentErrMsg();
        aclDestroyTensor(q);
    }
}

// Found by fuzz/capi_family (fuzz/findings/capi_family/found-empty-view-later-zero-dim): a view whose
// zero-sized dimension is not the first, with declared storage, strides -1 and offset INT64_MIN (an
// empty block table [3, 0] of a call with no compressed token) was rejected as an int64 overflow
// of its reach, summed over the dimensions before the zero one; an empty view reads nothing.
TEST(CapiHardening, EmptyViewWithLaterZeroDimAndHugeOffset) {
    alignas(8) std::int32_t cell = 0;
    const std::int64_t storage[1] = {5};
    for (const std::int64_t offset : {std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max()})
        for (const std::int64_t stride : {std::int64_t{-1}, std::numeric_limits<std::int64_t>::max()}) {
            SCOPED_TRACE(::testing::Message() << "offset " << offset << ", stride " << stride);
            const std::int64_t shape[3] = {3, 7, 0}, strides[3] = {stride, stride, stride};
            aclTensor* t = aclCreateTensor(shape, 3, ACL_INT32, strides, offset, ACL_FORMAT_ND, storage, 1, &cell);
            ASSERT_NE(t, nullptr);
            opennsa::TensorView v;
            EXPECT_NO_THROW(v = opennsa::capi::to_view(t, "blockTableOptional"));
            EXPECT_EQ(v.shape[2], 0);
            EXPECT_EQ(v.data, &cell);
            aclDestroyTensor(t);
        }
    // A non-empty view with the same reach is still an error.
    const std::int64_t shape[2] = {3, 1}, strides[2] = {-1, -1};
    aclTensor* t = aclCreateTensor(shape, 2, ACL_INT32, strides, std::numeric_limits<std::int64_t>::min(),
                                   ACL_FORMAT_ND, storage, 1, &cell);
    EXPECT_THROW(opennsa::capi::to_view(t, "blockTableOptional"), opennsa::Error);
    aclDestroyTensor(t);
}

// Defect 4: a data pointer that is not aligned to its element size is rejected in phase one.
TEST(CapiHardening, MisalignedDataIsRejected) {
    Case c;
    c.dtype = opennsa::DType::f32;
    c.seed = nsa_test::case_seed(43);
    Tensors host(c);
    AclProblem a(host);
    std::vector<unsigned char> raw(host.q.bytes.size() + 8);
    const std::int64_t shape[3] = {host.q.view.shape[0], host.q.view.shape[1], host.q.view.shape[2]};
    aclTensor* q = aclCreateTensor(shape, 3, ACL_FLOAT, host.q.view.strides, 0, ACL_FORMAT_ND, nullptr, 0,
                                   raw.data() + 2);
    std::uint64_t ws = 0;
    aclOpExecutor* ex = nullptr;
    const opennsa::Params& p = host.params;
    a.out.poison();
    EXPECT_EQ(aclnnNsaSelectedAttentionGetWorkspaceSize(q, a.k.get(), a.v.get(), a.topk.get(), nullptr, a.cq, a.ckv,
                                                        p.scale, p.head_num, a.layout, p.sparse_mode, p.block_size,
                                                        p.block_count, a.smax.get(), a.ssum.get(), a.out.get(), &ws,
                                                        &ex),
              ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("aligned"));
    EXPECT_TRUE(a.out.untouched("attentionOut"));
    aclDestroyTensor(q);
}

}  // namespace
