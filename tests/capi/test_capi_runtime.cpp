// The host runtime (acl*, aclrt*) and the aclnn meta objects: every function, good and bad
// arguments, documented codes and messages that name the parameter.
#include <cmath>
#include <thread>

#include "capi_util.hpp"

using capi_test::message_names;

extern "C" int capi_c_header_check(void);  // headers_c.c, compiled as C99

namespace {

TEST(CapiHeaders, CompileAsC) { EXPECT_EQ(capi_c_header_check(), 0); }

TEST(CapiHeaders, EnumsAreUnscopedWithCannValues) {
    static_assert(aclDataType::ACL_FLOAT16 == 1 && ACL_BF16 == 27 && ACL_DT_UNDEFINED == -1 && ACL_BOOL == 12);
    static_assert(aclFormat::ACL_FORMAT_ND == 2 && ACL_MEMCPY_DEVICE_TO_HOST == 2 && ACL_MEM_MALLOC_NORMAL_ONLY == 2);
    static_assert(ACLNN_ERR_PARAM_NULLPTR == 161001 && ACLNN_ERR_PARAM_INVALID == 161002 && ACLNN_ERR_INNER == 561000);
    static_assert(ACL_ERROR_INVALID_PARAM == 100000 && ACL_ERROR_BAD_ALLOC == 200000 && ACL_SUCCESS == 0);
    static_assert(sizeof(aclFloat16) == 2 && sizeof(aclnnStatus) == 4);
}

TEST(CapiRuntime, InitAndFinalizeCountLikeCann) {
    EXPECT_EQ(aclFinalize(), ACL_ERROR_REPEAT_FINALIZE);
    EXPECT_TRUE(message_names("aclFinalize"));
    EXPECT_EQ(aclrtSetDevice(0), ACL_ERROR_UNINITIALIZE);
    aclrtStream s = nullptr;
    EXPECT_EQ(aclrtCreateStream(&s), ACL_ERROR_UNINITIALIZE);
    EXPECT_EQ(aclInit(nullptr), ACL_SUCCESS);
    EXPECT_EQ(aclInit("unused.json"), ACL_ERROR_REPEAT_INITIALIZE);
    EXPECT_TRUE(message_names("aclInit"));
    std::uint64_t refs = 9;
    EXPECT_EQ(aclFinalizeReference(&refs), ACL_SUCCESS);
    EXPECT_EQ(refs, 1u);
    EXPECT_EQ(aclFinalize(), ACL_SUCCESS);  // clears the count
    EXPECT_EQ(aclFinalize(), ACL_ERROR_REPEAT_FINALIZE);
    EXPECT_EQ(aclFinalizeReference(nullptr), ACL_ERROR_REPEAT_FINALIZE);
    EXPECT_EQ(aclInit(nullptr), ACL_SUCCESS);  // a new cycle works
    EXPECT_EQ(aclFinalize(), ACL_SUCCESS);
}

class CapiRuntimeInit : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_EQ(aclInit(nullptr), ACL_SUCCESS); }
    void TearDown() override { EXPECT_EQ(aclFinalize(), ACL_SUCCESS); }
};

TEST_F(CapiRuntimeInit, OneDeviceWithIdZero) {
    EXPECT_EQ(aclrtSetDevice(0), ACL_SUCCESS);
    EXPECT_EQ(aclrtSetDevice(1), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("deviceId = 1"));
    EXPECT_EQ(aclrtSetDevice(-1), ACL_ERROR_INVALID_PARAM);
    EXPECT_EQ(aclrtResetDevice(3), ACL_ERROR_INVALID_PARAM);
    std::int32_t id = -5;
    EXPECT_EQ(aclrtGetDevice(&id), ACL_SUCCESS);
    EXPECT_EQ(id, 0);
    EXPECT_EQ(aclrtGetDevice(nullptr), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("deviceId"));
    std::uint32_t n = 0;
    EXPECT_EQ(aclrtGetDeviceCount(&n), ACL_SUCCESS);
    EXPECT_EQ(n, 1u);
    EXPECT_EQ(aclrtGetDeviceCount(nullptr), ACL_ERROR_INVALID_PARAM);
    EXPECT_EQ(aclrtSynchronizeDevice(), ACL_SUCCESS);
    EXPECT_EQ(aclrtResetDevice(0), ACL_SUCCESS);
}

TEST_F(CapiRuntimeInit, StreamsLiveUntilDestroyed) {
    aclrtStream a = nullptr, b = nullptr;
    ASSERT_EQ(aclrtCreateStream(&a), ACL_SUCCESS);
    ASSERT_EQ(aclrtCreateStream(&b), ACL_SUCCESS);
    EXPECT_NE(a, b);
    EXPECT_EQ(aclrtSynchronizeStream(a), ACL_SUCCESS);
    EXPECT_EQ(aclrtSynchronizeStream(nullptr), ACL_SUCCESS);  // the default stream
    EXPECT_EQ(aclrtDestroyStream(a), ACL_SUCCESS);
    EXPECT_EQ(aclrtDestroyStream(a), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("stream"));
    EXPECT_EQ(aclrtSynchronizeStream(a), ACL_ERROR_INVALID_PARAM);
    EXPECT_EQ(aclrtDestroyStream(nullptr), ACL_ERROR_INVALID_PARAM);
    EXPECT_EQ(aclrtCreateStream(nullptr), ACL_ERROR_INVALID_PARAM);
    EXPECT_EQ(aclrtSynchronizeDevice(), ACL_SUCCESS);
    EXPECT_EQ(aclrtDestroyStream(b), ACL_SUCCESS);
}

TEST(CapiMemory, MallocIsAlignedAndTracked) {
    void* p = nullptr;
    ASSERT_EQ(aclrtMalloc(&p, 100, ACL_MEM_MALLOC_HUGE_FIRST), ACL_SUCCESS);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u);
    std::memset(p, 1, 100);
    void* h = nullptr;
    ASSERT_EQ(aclrtMallocHost(&h, 10), ACL_SUCCESS);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(h) % 64, 0u);
    EXPECT_EQ(aclrtFree(h), ACL_ERROR_INVALID_PARAM);  // host memory through the device free
    EXPECT_TRUE(message_names("aclrtMallocHost"));
    EXPECT_EQ(aclrtFreeHost(h), ACL_SUCCESS);
    EXPECT_EQ(aclrtFree(p), ACL_SUCCESS);
    EXPECT_EQ(aclrtFree(p), ACL_ERROR_INVALID_PARAM);  // double free is an error, not a crash
    EXPECT_TRUE(message_names("devPtr"));

    void* q = reinterpret_cast<void*>(0x1234);
    EXPECT_EQ(aclrtMalloc(&q, 0, ACL_MEM_MALLOC_HUGE_FIRST), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("size = 0"));
    EXPECT_EQ(q, reinterpret_cast<void*>(0x1234));
    EXPECT_EQ(aclrtMallocHost(&q, 0), ACL_ERROR_INVALID_PARAM);
    EXPECT_EQ(aclrtMalloc(nullptr, 8, ACL_MEM_MALLOC_HUGE_FIRST), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("devPtr"));
    EXPECT_EQ(aclrtMalloc(&q, 8, static_cast<aclrtMemMallocPolicy>(7)), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("policy"));
    EXPECT_EQ(aclrtMalloc(&q, SIZE_MAX / 2, ACL_MEM_MALLOC_HUGE_FIRST), ACL_ERROR_BAD_ALLOC);
    EXPECT_EQ(aclrtFree(nullptr), ACL_ERROR_INVALID_PARAM);
    EXPECT_EQ(aclrtFreeHost(nullptr), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("hostPtr"));
}

TEST(CapiMemory, CopiesAndSetsRespectTheirBounds) {
    ASSERT_EQ(aclInit(nullptr), ACL_SUCCESS);
    aclrtStream s = nullptr;
    ASSERT_EQ(aclrtCreateStream(&s), ACL_SUCCESS);
    unsigned char src[32], dst[32];
    for (int i = 0; i < 32; ++i) src[i] = static_cast<unsigned char>(i + 1);
    std::memset(dst, 0xAB, sizeof dst);
    EXPECT_EQ(aclrtMemcpy(dst, 16, src, 17, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("destMax"));
    EXPECT_EQ(dst[0], 0xAB);
    EXPECT_EQ(aclrtMemcpy(dst, 32, nullptr, 4, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("src"));
    EXPECT_EQ(aclrtMemcpy(nullptr, 32, src, 4, ACL_MEMCPY_HOST_TO_DEVICE), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("dst"));
    EXPECT_EQ(aclrtMemcpy(dst, 32, src, 4, static_cast<aclrtMemcpyKind>(9)), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("kind"));
    EXPECT_EQ(aclrtMemcpy(dst, 32, src, 16, ACL_MEMCPY_HOST_TO_DEVICE), ACL_SUCCESS);
    EXPECT_EQ(std::memcmp(dst, src, 16), 0);
    EXPECT_EQ(dst[16], 0xAB);
    EXPECT_EQ(aclrtMemcpyAsync(dst + 16, 16, src, 16, ACL_MEMCPY_DEVICE_TO_DEVICE, s), ACL_SUCCESS);
    EXPECT_EQ(aclrtSynchronizeStream(s), ACL_SUCCESS);
    EXPECT_EQ(std::memcmp(dst + 16, src, 16), 0);
    EXPECT_EQ(aclrtMemcpyAsync(dst, 8, src, 9, ACL_MEMCPY_DEFAULT, s), ACL_ERROR_INVALID_PARAM);

    EXPECT_EQ(aclrtMemset(dst, 8, 0x5A, 9), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("maxCount"));
    EXPECT_EQ(dst[0], 1);
    EXPECT_EQ(aclrtMemset(nullptr, 8, 0, 8), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("devPtr"));
    EXPECT_EQ(aclrtMemset(dst, 32, 0x5A, 8), ACL_SUCCESS);
    EXPECT_EQ(dst[7], 0x5A);
    EXPECT_EQ(dst[8], 9);
    EXPECT_EQ(aclrtMemsetAsync(dst, 32, 0, 32, s), ACL_SUCCESS);
    EXPECT_EQ(aclrtSynchronizeStream(s), ACL_SUCCESS);
    EXPECT_EQ(dst[31], 0);
    int not_a_stream = 0;
    EXPECT_EQ(aclrtMemsetAsync(dst, 32, 1, 32, &not_a_stream), ACL_ERROR_INVALID_PARAM);
    EXPECT_TRUE(message_names("stream"));
    EXPECT_EQ(dst[0], 0);
    EXPECT_EQ(aclrtDestroyStream(s), ACL_SUCCESS);
    EXPECT_EQ(aclFinalize(), ACL_SUCCESS);
}

TEST(CapiDtype, Float16ConversionsRoundToNearestEven) {
    EXPECT_EQ(aclFloatToFloat16(1.0f), 0x3C00);
    EXPECT_EQ(aclFloatToFloat16(1.0f + 0x1p-11f), 0x3C00);         // tie -> even
    EXPECT_EQ(aclFloatToFloat16(1.0f + 3 * 0x1p-11f), 0x3C02);     // tie -> even (up)
    EXPECT_EQ(aclFloatToFloat16(-65520.0f), 0xFC00);               // rounds to -inf
    EXPECT_EQ(aclFloatToFloat16(0x1p-25f), 0x0000);                // tie at the smallest subnormal
    EXPECT_EQ(aclFloat16ToFloat(0x0001), 0x1p-24f);
    EXPECT_TRUE(std::isnan(aclFloat16ToFloat(aclFloatToFloat16(NAN))));
    for (std::uint32_t h = 0; h < 0x10000; ++h) {
        const auto bits = static_cast<aclFloat16>(h);
        const float f = aclFloat16ToFloat(bits);
        if (!std::isnan(f)) {
            ASSERT_EQ(aclFloatToFloat16(f), bits) << h;
        }
    }
}

TEST(CapiDtype, SizesOfEveryType) {
    const std::pair<aclDataType, size_t> sizes[] = {
        {ACL_FLOAT, 4},  {ACL_FLOAT16, 2}, {ACL_INT8, 1},   {ACL_INT32, 4},     {ACL_UINT8, 1},      {ACL_INT16, 2},
        {ACL_UINT16, 2}, {ACL_UINT32, 4},  {ACL_INT64, 8},  {ACL_UINT64, 8},    {ACL_DOUBLE, 8},     {ACL_BOOL, 1},
        {ACL_STRING, 0}, {ACL_BF16, 2},    {ACL_COMPLEX64, 8}, {ACL_COMPLEX128, 16}, {ACL_DT_UNDEFINED, 0}};
    for (auto [t, n] : sizes) EXPECT_EQ(aclDataTypeSize(t), n) << t;
    EXPECT_EQ(aclDataTypeSize(static_cast<aclDataType>(55)), 0u);
}

// --- meta objects ------------------------------------------------------------------------------

TEST(CapiMeta, TensorRecordsItsArguments) {
    const std::int64_t dims[3] = {4, 3, 2}, strides[3] = {1, 8, 24}, storage[1] = {60};
    float data[60];
    aclTensor* t = aclCreateTensor(dims, 3, ACL_FLOAT, strides, 5, ACL_FORMAT_NCHW, storage, 1, data);
    ASSERT_NE(t, nullptr);
    std::int64_t* got = nullptr;
    std::uint64_t n = 0;
    ASSERT_EQ(aclGetViewShape(t, &got, &n), ACLNN_SUCCESS);
    EXPECT_EQ(std::vector<std::int64_t>(got, got + n), std::vector<std::int64_t>({4, 3, 2}));
    delete[] got;
    ASSERT_EQ(aclGetViewStrides(t, &got, &n), ACLNN_SUCCESS);
    EXPECT_EQ(std::vector<std::int64_t>(got, got + n), std::vector<std::int64_t>({1, 8, 24}));
    delete[] got;
    ASSERT_EQ(aclGetStorageShape(t, &got, &n), ACLNN_SUCCESS);
    EXPECT_EQ(std::vector<std::int64_t>(got, got + n), std::vector<std::int64_t>({60}));
    delete[] got;
    std::int64_t offset = 0;
    EXPECT_EQ(aclGetViewOffset(t, &offset), ACLNN_SUCCESS);
    EXPECT_EQ(offset, 5);
    aclDataType dt = ACL_DT_UNDEFINED;
    EXPECT_EQ(aclGetDataType(t, &dt), ACLNN_SUCCESS);
    EXPECT_EQ(dt, ACL_FLOAT);
    aclFormat fmt = ACL_FORMAT_UNDEFINED;
    EXPECT_EQ(aclGetFormat(t, &fmt), ACLNN_SUCCESS);
    EXPECT_EQ(fmt, ACL_FORMAT_NCHW);

    EXPECT_EQ(aclGetViewShape(nullptr, &got, &n), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("tensor"));
    EXPECT_EQ(aclGetViewStrides(t, nullptr, &n), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("stridesValue"));
    EXPECT_EQ(aclGetStorageShape(t, &got, nullptr), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("storageDimsNum"));
    EXPECT_EQ(aclGetViewOffset(t, nullptr), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("offset"));
    EXPECT_EQ(aclGetDataType(t, nullptr), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_EQ(aclGetFormat(nullptr, &fmt), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_EQ(aclDestroyTensor(t), ACLNN_SUCCESS);
    EXPECT_EQ(aclDestroyTensor(nullptr), ACLNN_SUCCESS);
}

TEST(CapiMeta, TensorWithoutStridesIsDense) {
    const std::int64_t dims[3] = {2, 3, 5};
    aclTensor* t = aclCreateTensor(dims, 3, ACL_FLOAT16, nullptr, 0, ACL_FORMAT_ND, nullptr, 0, nullptr);
    ASSERT_NE(t, nullptr);
    std::int64_t* got = nullptr;
    std::uint64_t n = 0;
    ASSERT_EQ(aclGetViewStrides(t, &got, &n), ACLNN_SUCCESS);
    EXPECT_EQ(std::vector<std::int64_t>(got, got + n), std::vector<std::int64_t>({15, 5, 1}));
    delete[] got;
    ASSERT_EQ(aclGetStorageShape(t, &got, &n), ACLNN_SUCCESS);
    EXPECT_EQ(n, 0u);
    delete[] got;
    aclDestroyTensor(t);
}

TEST(CapiMeta, BadCreateArgumentsGiveNull) {
    const std::int64_t dims[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    EXPECT_EQ(aclCreateTensor(nullptr, 3, ACL_FLOAT, nullptr, 0, ACL_FORMAT_ND, nullptr, 0, nullptr), nullptr);
    EXPECT_TRUE(message_names("viewDims"));
    EXPECT_EQ(aclCreateTensor(dims, 9, ACL_FLOAT, nullptr, 0, ACL_FORMAT_ND, nullptr, 0, nullptr), nullptr);
    EXPECT_TRUE(message_names("viewDims"));
    EXPECT_EQ(aclCreateTensor(dims, 2, ACL_FLOAT, nullptr, 0, ACL_FORMAT_ND, nullptr, 2, nullptr), nullptr);
    EXPECT_TRUE(message_names("storageDims"));
    const std::int64_t huge[3] = {4, INT64_MAX / 2, 4};  // dense strides overflow
    EXPECT_EQ(aclCreateTensor(huge, 3, ACL_FLOAT, nullptr, 0, ACL_FORMAT_ND, nullptr, 0, nullptr), nullptr);
    EXPECT_EQ(aclCreateIntArray(nullptr, 2), nullptr);
    EXPECT_TRUE(message_names("value"));
    EXPECT_EQ(aclCreateFloatArray(nullptr, 1), nullptr);
    EXPECT_EQ(aclCreateBoolArray(nullptr, 1), nullptr);
    EXPECT_EQ(aclCreateScalar(nullptr, ACL_FLOAT), nullptr);
    float one = 1;
    EXPECT_EQ(aclCreateScalar(&one, ACL_STRING), nullptr);
    EXPECT_TRUE(message_names("dataType"));
}

TEST(CapiMeta, ArraysAndScalars) {
    const std::int64_t v[3] = {3, 5, 9};
    aclIntArray* a = aclCreateIntArray(v, 3);
    ASSERT_NE(a, nullptr);
    std::uint64_t n = 0;
    EXPECT_EQ(aclGetIntArraySize(a, &n), ACLNN_SUCCESS);
    EXPECT_EQ(n, 3u);
    EXPECT_EQ(aclGetIntArraySize(nullptr, &n), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("array"));
    EXPECT_EQ(aclGetIntArraySize(a, nullptr), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_TRUE(message_names("size"));
    EXPECT_EQ(aclDestroyIntArray(a), ACLNN_SUCCESS);
    aclIntArray* empty = aclCreateIntArray(nullptr, 0);
    ASSERT_NE(empty, nullptr);
    EXPECT_EQ(aclGetIntArraySize(empty, &n), ACLNN_SUCCESS);
    EXPECT_EQ(n, 0u);
    aclDestroyIntArray(empty);

    const float f[2] = {0.5f, 2};
    const bool b[3] = {true, false, true};
    aclFloatArray* fa = aclCreateFloatArray(f, 2);
    aclBoolArray* ba = aclCreateBoolArray(b, 3);
    EXPECT_NE(fa, nullptr);
    EXPECT_NE(ba, nullptr);
    EXPECT_EQ(aclDestroyFloatArray(fa), ACLNN_SUCCESS);
    EXPECT_EQ(aclDestroyBoolArray(ba), ACLNN_SUCCESS);
    double d = 0.125;
    aclScalar* s = aclCreateScalar(&d, ACL_DOUBLE);
    EXPECT_NE(s, nullptr);
    EXPECT_EQ(aclDestroyScalar(s), ACLNN_SUCCESS);
    EXPECT_EQ(aclDestroyScalar(nullptr), ACLNN_SUCCESS);
}

TEST(CapiMeta, InitFinalizeAndExecutorHandles) {
    EXPECT_EQ(aclnnInit(nullptr), ACLNN_SUCCESS);
    EXPECT_EQ(aclnnFinalize(), ACLNN_SUCCESS);
    int bogus = 0;
    auto* fake = reinterpret_cast<aclOpExecutor*>(&bogus);
    EXPECT_EQ(aclSetAclOpExecutorRepeatable(fake), ACLNN_ERR_PARAM_INVALID);
    EXPECT_TRUE(message_names("executor"));
    EXPECT_EQ(aclSetAclOpExecutorRepeatable(nullptr), ACLNN_ERR_PARAM_NULLPTR);
    EXPECT_EQ(aclDestroyAclOpExecutor(fake), ACLNN_ERR_PARAM_INVALID);
    EXPECT_EQ(aclnnNsaSelectedAttention(nullptr, 0, fake, nullptr), ACLNN_ERR_PARAM_INVALID);
    EXPECT_EQ(aclnnNsaSelectedAttentionGrad(nullptr, 0, fake, nullptr), ACLNN_ERR_PARAM_INVALID);
}

}  // namespace
