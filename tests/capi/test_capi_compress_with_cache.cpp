// aclnnNsaCompressWithCache through the C API: the same bits as the native API (fp16, bf16;
// shuffled pages, strided views with offsets), repeatable executors, the value checks of the
// launch, and the error paths with their status, message and untouched cache.
#include <memory>

#include "aclnnop/aclnn_nsa_compress_with_cache.h"
#include "capi_util.hpp"
#include "ops/compress_with_cache/cases.hpp"

using namespace capi_test;

namespace {

struct CwcProblem {
    cwc_test::Tensors t;
    std::unique_ptr<AclMirror> input, weight, slots, table, cache;
    aclIntArray* lens = nullptr;
    char layout[5] = "TND";
    std::int64_t seq_type = 1;

    explicit CwcProblem(const cwc_test::Case& c) : t(c) {
        input = std::make_unique<AclMirror>(t.input, 1);
        weight = std::make_unique<AclMirror>(t.weight, 2);
        slots = std::make_unique<AclMirror>(t.slots, 3);
        table = std::make_unique<AclMirror>(t.table, 4);
        cache = std::make_unique<AclMirror>(t.cache, 5);
        lens = aclCreateIntArray(t.params.seq_lens.data(), t.params.seq_lens.size());
    }
    ~CwcProblem() { aclDestroyIntArray(lens); }

    aclnnStatus prepare(std::uint64_t* ws, aclOpExecutor** ex) {
        return aclnnNsaCompressWithCacheGetWorkspaceSize(input->get(), weight->get(), slots->get(), lens, table->get(),
                                                         layout, t.c.l, t.c.d, seq_type, t.c.P, cache->get(), ws, ex);
    }
    aclnnStatus run() {
        return two_phase([&](std::uint64_t* w, aclOpExecutor** e) { return prepare(w, e); }, aclnnNsaCompressWithCache);
    }
    // Sets batch b's slot in the C API's copy.
    void set_acl_slot(std::int64_t b, std::int32_t v) {
        std::memcpy(slots->payload() + cwc_test::offset_bytes(t.slots, {b}), &v, sizeof v);
    }
};

cwc_test::Case base(DType dtype, std::uint64_t salt) {
    cwc_test::Case c;
    c.dtype = dtype;
    c.N = 3, c.D = 37, c.l = 8, c.d = 4, c.P = 8;
    c.lens = {8, 12, 13, 5, 40, 0};
    c.seed = nsa_test::case_seed(salt);
    return c;
}

}  // namespace

TEST(CapiCompressWithCache, SameBitsAsNativeApi) {
    for (DType dtype : {DType::bf16, DType::f16})
        for (cwc_test::Layout layout : {cwc_test::Layout::contiguous, cwc_test::Layout::padded, cwc_test::Layout::strided}) {
            cwc_test::Case c = base(dtype, 10);
            c.input = c.cache = layout;
            SCOPED_TRACE(c.describe());
            CwcProblem p(c);
            ASSERT_EQ(p.run(), ACLNN_SUCCESS) << aclGetRecentErrMsg();
            opennsa::compress_with_cache(p.t.args(), p.t.params);
            EXPECT_TRUE(p.t.only_slots_written());
            EXPECT_TRUE(p.cache->same_bits(p.t.cache, "outputCache"));
            // the production sizes
            c.N = 4, c.D = 192, c.l = 32, c.d = 16, c.P = 128, c.lens = {32, 300, 272};
            CwcProblem q(c);
            ASSERT_EQ(q.run(), ACLNN_SUCCESS) << aclGetRecentErrMsg();
            opennsa::compress_with_cache(q.t.args(), q.t.params);
            EXPECT_TRUE(q.cache->same_bits(q.t.cache, "outputCache"));
        }
}

TEST(CapiCompressWithCache, NoWorkspaceAndTheLayoutIsNotRead) {
    for (const char* layout : {"TND", "BSND", ""}) {
        CwcProblem p(base(DType::bf16, 20));
        std::strcpy(p.layout, layout);
        std::uint64_t ws = 7;
        aclOpExecutor* ex = nullptr;
        ASSERT_EQ(p.prepare(&ws, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
        EXPECT_EQ(ws, 0u);
        ASSERT_EQ(aclnnNsaCompressWithCache(nullptr, 0, ex, nullptr), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    }
    CwcProblem p(base(DType::bf16, 21));
    std::uint64_t ws = 7;
    aclOpExecutor* ex = nullptr;
    EXPECT_EQ(aclnnNsaCompressWithCacheGetWorkspaceSize(p.input->get(), p.weight->get(), p.slots->get(), p.lens,
                                                        p.table->get(), nullptr, p.t.c.l, p.t.c.d, 1, p.t.c.P,
                                                        p.cache->get(), &ws, &ex),
              ACLNN_SUCCESS)
        << aclGetRecentErrMsg();
    EXPECT_EQ(aclnnNsaCompressWithCache(nullptr, 0, ex, nullptr), ACLNN_SUCCESS) << aclGetRecentErrMsg();
}

// A repeatable executor runs once per decoding step; the launch checks the slot values each time
// (they are data, read at the launch), and a bad one writes nothing.
TEST(CapiCompressWithCache, RepeatableExecutorChecksValuesAtEachLaunch) {
    CwcProblem p(base(DType::bf16, 30));
    std::uint64_t ws = 0;
    aclOpExecutor* ex = nullptr;
    ASSERT_EQ(p.prepare(&ws, &ex), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    ASSERT_EQ(aclSetAclOpExecutorRepeatable(ex), ACLNN_SUCCESS);
    p.set_acl_slot(1, static_cast<std::int32_t>(p.t.R));  // batch 1 (L = 12) is triggered
    EXPECT_EQ(aclnnNsaCompressWithCache(nullptr, 0, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("slotMapping[1] = "));
    EXPECT_TRUE(message_names("aclnnNsaCompressWithCache"));
    EXPECT_TRUE(p.cache->untouched("outputCache"));
    p.set_acl_slot(1, static_cast<std::int32_t>(p.t.slot(1)));
    ASSERT_EQ(aclnnNsaCompressWithCache(nullptr, 0, ex, nullptr), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    ASSERT_EQ(aclnnNsaCompressWithCache(nullptr, 0, ex, nullptr), ACLNN_SUCCESS) << aclGetRecentErrMsg();
    opennsa::compress_with_cache(p.t.args(), p.t.params);
    EXPECT_TRUE(p.cache->same_bits(p.t.cache, "outputCache"));
    EXPECT_EQ(aclDestroyAclOpExecutor(ex), ACLNN_SUCCESS);
}

TEST(CapiCompressWithCache, NullPointersAreNamed) {
    CwcProblem p(base(DType::bf16, 40));
    std::uint64_t ws = 0;
    aclOpExecutor* ex = nullptr;
    const auto& c = p.t.c;
    const char* names[] = {"input", "weight", "slotMapping", "actSeqLenOptional", "blockTableOptional",
                           "outputCache", "workspaceSize", "executor"};
    for (int i = 0; i < 8; ++i) {
        const aclnnStatus s = aclnnNsaCompressWithCacheGetWorkspaceSize(
            i == 0 ? nullptr : p.input->get(), i == 1 ? nullptr : p.weight->get(), i == 2 ? nullptr : p.slots->get(),
            i == 3 ? nullptr : p.lens, i == 4 ? nullptr : p.table->get(), p.layout, c.l, c.d, 1, c.P,
            i == 5 ? nullptr : p.cache->get(), i == 6 ? nullptr : &ws, i == 7 ? nullptr : &ex);
        EXPECT_EQ(s, ACLNN_ERR_PARAM_NULLPTR) << names[i];
        EXPECT_TRUE(message_names(names[i]));
        EXPECT_TRUE(message_names("aclnnNsaCompressWithCacheGetWorkspaceSize"));
    }
    EXPECT_EQ(aclnnNsaCompressWithCache(nullptr, 0, nullptr, nullptr), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(p.cache->untouched("outputCache"));
}

TEST(CapiCompressWithCache, InvalidArgumentsAreReportedAndWriteNothing) {
    CwcProblem p(base(DType::bf16, 50));
    std::uint64_t ws = 0;
    aclOpExecutor* ex = nullptr;
    auto expect_invalid = [&](const char* what) {
        EXPECT_EQ(p.prepare(&ws, &ex), ACLNN_ERR_PARAM_INVALID) << what;
        EXPECT_TRUE(message_names(what));
    };
    p.seq_type = 0;
    expect_invalid("actSeqLenType = 0");
    p.seq_type = 1;
    p.t.c.d = 0;
    expect_invalid("compressStride = 0");
    p.t.c.d = 4, p.t.c.P = 16;
    expect_invalid("input.shape[1] = 8 must equal pageBlockSize = 16");
    p.t.c.P = 8;
    const std::int64_t short_lens[] = {8, 12};
    aclIntArray* two = aclCreateIntArray(short_lens, 2);
    std::swap(two, p.lens);
    expect_invalid("actSeqLenOptional: 2 entries, must have B = 6");
    std::swap(two, p.lens);
    aclDestroyIntArray(two);

    // fp32 data is native-only; slotMapping and blockTable must really be int32 (CANN's check is a no-op)
    std::vector<unsigned char> scratch(1 << 16, 0);
    auto tensor = [&](std::vector<std::int64_t> dims, aclDataType dt) {
        return aclCreateTensor(dims.data(), dims.size(), dt, nullptr, 0, ACL_FORMAT_ND, nullptr, 0, scratch.data());
    };
    const auto& c = p.t.c;
    aclTensor* in32 = tensor({p.t.pages, c.P, c.N, c.D}, ACL_FLOAT);
    aclTensor* slots_f = tensor({c.B()}, ACL_FLOAT);
    aclTensor* table_h = tensor({c.B(), p.t.cols}, ACL_FLOAT16);
    aclTensor* tnd = tensor({p.t.pages * c.P, c.N, c.D}, ACL_BF16);
    auto call = [&](const aclTensor* in, const aclTensor* sl, const aclTensor* tb) {
        return aclnnNsaCompressWithCacheGetWorkspaceSize(in, p.weight->get(), sl, p.lens, tb, p.layout, c.l, c.d, 1, c.P,
                                                         p.cache->get(), &ws, &ex);
    };
    EXPECT_EQ(call(in32, p.slots->get(), p.table->get()), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("input: dtype fp32 is not supported by aclnnNsaCompressWithCache"));
    EXPECT_EQ(call(p.input->get(), slots_f, p.table->get()), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("slotMapping: dtype fp32 must be int32"));
    EXPECT_EQ(call(p.input->get(), p.slots->get(), table_h), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("blockTableOptional: dtype fp16 must be int32"));
    EXPECT_EQ(call(tnd, p.slots->get(), p.table->get()), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("TND layout is not supported"));
    for (aclTensor* x : {in32, slots_f, table_h, tnd}) aclDestroyTensor(x);

    // a window page outside the cache: found by the launch, nothing written
    p.t.set_page(4, 4, -3);  // batch 4 (L = 40) reads [32, 40): its page 4
    AclMirror bad_table(p.t.table, 6);
    EXPECT_EQ(aclnnNsaCompressWithCacheGetWorkspaceSize(p.input->get(), p.weight->get(), p.slots->get(), p.lens,
                                                        bad_table.get(), p.layout, c.l, c.d, 1, c.P, p.cache->get(),
                                                        &ws, &ex),
              ACLNN_SUCCESS)
        << aclGetRecentErrMsg();
    EXPECT_EQ(aclnnNsaCompressWithCache(nullptr, 0, ex, nullptr), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("blockTableOptional[4, 4] = -3 is not a page of input"));
    EXPECT_TRUE(p.cache->untouched("outputCache"));
}
