// aclnnNsaCompressWithCache as CANN's documentation calls it: written after the example program
// ("调用示例") of attention/nsa_compress_with_cache/docs/aclnnNsaCompressWithCache.md in CANN's
// ops-transformer repository (also hiascend.com, aolapi/context/aclnnNsaCompressWithCache.md). Same
// headers, the same runtime calls (aclInit, aclrtSetDevice, aclrtCreateStream - no context on that
// page -, aclrtMalloc / aclrtMemcpy / aclCreateTensor, the two-phase call, aclrtSynchronizeStream,
// aclrtMemcpy back, cleanup), a paged input [blocks, pageBlockSize, N, D] with a block table,
// per-batch lengths (actSeqLenType 1), layout "TND" as the page passes it, pages of 64. Unlike the
// page it uses lengths that trigger some batches and not others, a shuffled block table, random
// data and a random cache, and checks that exactly the triggered slots changed, to the float64
// value (docs/spec/decoding.md). Sizes are within CANN's limits.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "acl/acl.h"
#include "aclnnop/aclnn_nsa_compress_with_cache.h"

#define CHECK_RET(cond, return_expr) \
    do {                             \
        if (!(cond)) {               \
            return_expr;             \
        }                            \
    } while (0)

#define LOG_PRINT(message, ...)         \
    do {                                \
        printf(message, ##__VA_ARGS__); \
    } while (0)

int64_t GetShapeSize(const std::vector<int64_t>& shape) {
    int64_t shape_size = 1;
    for (auto i : shape) {
        shape_size *= i;
    }
    return shape_size;
}

int Init(int32_t deviceId, aclrtStream* stream) {
    auto ret = aclInit(nullptr);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclInit failed. ERROR: %d\n", ret); return ret);
    ret = aclrtSetDevice(deviceId);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtSetDevice failed. ERROR: %d\n", ret); return ret);
    ret = aclrtCreateStream(stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtCreateStream failed. ERROR: %d\n", ret); return ret);
    return 0;
}

template <typename T>
int CreateAclTensor(const std::vector<T>& hostData, const std::vector<int64_t>& shape, void** deviceAddr,
                    aclDataType dataType, aclTensor** tensor) {
    auto size = GetShapeSize(shape) * sizeof(T);
    auto ret = aclrtMalloc(deviceAddr, size, ACL_MEM_MALLOC_HUGE_FIRST);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtMalloc failed. ERROR: %d\n", ret); return ret);
    ret = aclrtMemcpy(*deviceAddr, size, hostData.data(), size, ACL_MEMCPY_HOST_TO_DEVICE);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtMemcpy failed. ERROR: %d\n", ret); return ret);
    std::vector<int64_t> strides(shape.size(), 1);
    for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; i--) {
        strides[i] = shape[i + 1] * strides[i + 1];
    }
    *tensor = aclCreateTensor(shape.data(), shape.size(), dataType, strides.data(), 0, aclFormat::ACL_FORMAT_ND,
                              shape.data(), shape.size(), *deviceAddr);
    CHECK_RET(*tensor != nullptr, LOG_PRINT("aclCreateTensor failed: %s\n", aclGetRecentErrMsg()); return 1);
    return 0;
}

int main() {
    // Windows of 32 tokens every 16; batches that now hold 32, 48, 40 and 144 tokens. A batch is
    // triggered when its newest complete window just ended: L >= 32 and (L - 32) % 16 == 0, so
    // all but the third (40) write their slot.
    constexpr int64_t compress_block_size = 32;
    constexpr int64_t compress_stride = 16;
    constexpr int64_t heads_num = 2;
    constexpr int64_t heads_dim = 32;
    constexpr int64_t page_block_size = 64;
    constexpr int64_t result_len = 16;  // rows of the compressed cache
    const std::vector<int64_t> seqLens = {32, 48, 40, 144};
    const int64_t batch_size = static_cast<int64_t>(seqLens.size());
    const int64_t block_num_per_batch = (*std::max_element(seqLens.begin(), seqLens.end()) + page_block_size - 1) / page_block_size;

    // 1. Device and stream.
    int32_t deviceId = 0;
    aclrtStream stream = nullptr;
    auto ret = Init(deviceId, &stream);
    CHECK_RET(ret == 0, LOG_PRINT("Init acl failed. ERROR: %d\n", ret); return 1);

    // 2. Inputs: pages drawn from a shuffled pool (entries past a batch's pages are -1, never
    //    read), distinct random slots (-1 for the batch that is not triggered).
    std::mt19937 rng(20250707u);
    int64_t blocks_num = 0;
    for (int64_t len : seqLens) blocks_num += (len + page_block_size - 1) / page_block_size;
    std::vector<int32_t> pool(blocks_num);
    for (int64_t i = 0; i < blocks_num; ++i) pool[i] = static_cast<int32_t>(i);
    std::shuffle(pool.begin(), pool.end(), rng);
    std::vector<int32_t> blockTableHostData(batch_size * block_num_per_batch, -1);
    size_t next = 0;
    for (int64_t b = 0; b < batch_size; ++b)
        for (int64_t p = 0; p < (seqLens[b] + page_block_size - 1) / page_block_size; ++p)
            blockTableHostData[b * block_num_per_batch + p] = pool[next++];
    std::vector<int32_t> slots(result_len);
    for (int64_t i = 0; i < result_len; ++i) slots[i] = static_cast<int32_t>(i);
    std::shuffle(slots.begin(), slots.end(), rng);
    std::vector<bool> triggered(batch_size);
    std::vector<int32_t> slotMappingHostData(batch_size);
    for (int64_t b = 0; b < batch_size; ++b) {
        triggered[b] = seqLens[b] >= compress_block_size && (seqLens[b] - compress_block_size) % compress_stride == 0;
        slotMappingHostData[b] = triggered[b] ? slots[b] : -1;
    }

    std::vector<int64_t> inputShape = {blocks_num, page_block_size, heads_num, heads_dim};
    std::vector<int64_t> weightShape = {compress_block_size, heads_num};
    std::vector<int64_t> slotMappingShape = {batch_size};
    std::vector<int64_t> outputCacheRefShape = {result_len, heads_num, heads_dim};
    std::vector<int64_t> blockTableShape = {batch_size, block_num_per_batch};
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> uniform(-0.2f, 0.2f);
    std::vector<aclFloat16> inputHostData(GetShapeSize(inputShape)), weightHostData(GetShapeSize(weightShape)),
        outputCacheRefHostData(GetShapeSize(outputCacheRefShape));
    for (auto& x : inputHostData) x = aclFloatToFloat16(normal(rng));
    for (auto& x : weightHostData) x = aclFloatToFloat16(uniform(rng));
    for (auto& x : outputCacheRefHostData) x = aclFloatToFloat16(normal(rng));  // earlier cache contents

    void *inputDeviceAddr = nullptr, *weightDeviceAddr = nullptr, *slotMappingDeviceAddr = nullptr,
         *outputCacheRefDeviceAddr = nullptr, *blockTableDeviceAddr = nullptr;
    aclTensor *input = nullptr, *weight = nullptr, *slotMapping = nullptr, *outputCacheRef = nullptr,
              *blockTable = nullptr;
    ret = CreateAclTensor(inputHostData, inputShape, &inputDeviceAddr, aclDataType::ACL_FLOAT16, &input);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(weightHostData, weightShape, &weightDeviceAddr, aclDataType::ACL_FLOAT16, &weight);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(slotMappingHostData, slotMappingShape, &slotMappingDeviceAddr, aclDataType::ACL_INT32,
                          &slotMapping);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(outputCacheRefHostData, outputCacheRefShape, &outputCacheRefDeviceAddr,
                          aclDataType::ACL_FLOAT16, &outputCacheRef);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    aclIntArray* actSeqLen = aclCreateIntArray(seqLens.data(), seqLens.size());
    CHECK_RET(actSeqLen != nullptr, LOG_PRINT("aclCreateIntArray failed: %s\n", aclGetRecentErrMsg()); return 1);
    ret = CreateAclTensor(blockTableHostData, blockTableShape, &blockTableDeviceAddr, aclDataType::ACL_INT32, &blockTable);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    char layout[4] = "TND";
    int64_t actSeqLenType = 1;

    // 3. The two-phase call.
    uint64_t workspaceSize = 0;
    aclOpExecutor* executor = nullptr;
    ret = aclnnNsaCompressWithCacheGetWorkspaceSize(input, weight, slotMapping, actSeqLen, blockTable, layout,
                                                    compress_block_size, compress_stride, actSeqLenType,
                                                    page_block_size, outputCacheRef, &workspaceSize, &executor);
    CHECK_RET(ret == ACL_SUCCESS,
              LOG_PRINT("aclnnNsaCompressWithCacheGetWorkspaceSize failed. ERROR: %d (%s)\n", ret, aclGetRecentErrMsg());
              return 1);
    void* workspaceAddr = nullptr;
    if (workspaceSize > 0) {
        ret = aclrtMalloc(&workspaceAddr, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST);
        CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("allocate workspace failed. ERROR: %d\n", ret); return 1;);
    }
    ret = aclnnNsaCompressWithCache(workspaceAddr, workspaceSize, executor, stream);
    CHECK_RET(ret == ACL_SUCCESS,
              LOG_PRINT("aclnnNsaCompressWithCache failed. ERROR: %d (%s)\n", ret, aclGetRecentErrMsg()); return 1);

    // 4. Wait for the stream.
    ret = aclrtSynchronizeStream(stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtSynchronizeStream failed. ERROR: %d\n", ret); return 1);

    // 5. The cache: triggered slots hold the newest window's weighted sum, every other row is as it was.
    std::vector<aclFloat16> resultData(GetShapeSize(outputCacheRefShape), 0);
    ret = aclrtMemcpy(resultData.data(), resultData.size() * sizeof(aclFloat16), outputCacheRefDeviceAddr,
                      resultData.size() * sizeof(aclFloat16), ACL_MEMCPY_DEVICE_TO_HOST);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("copy result from device to host failed. ERROR: %d\n", ret); return 1);
    const int64_t rowSize = heads_num * heads_dim;
    std::vector<bool> written(result_len, false);
    double errSq = 0, refSq = 0;
    for (int64_t b = 0; b < batch_size; ++b) {
        if (!triggered[b]) continue;
        const int64_t slot = slotMappingHostData[b];
        written[slot] = true;
        for (int64_t h = 0; h < heads_num; ++h)
            for (int64_t e = 0; e < heads_dim; ++e) {
                double ref = 0;
                for (int64_t r = 0; r < compress_block_size; ++r) {
                    const int64_t p = seqLens[b] - compress_block_size + r;  // raw position in the batch
                    const int64_t page = blockTableHostData[b * block_num_per_batch + p / page_block_size];
                    ref += static_cast<double>(aclFloat16ToFloat(weightHostData[r * heads_num + h])) *
                           aclFloat16ToFloat(inputHostData[((page * page_block_size + p % page_block_size) * heads_num + h) * heads_dim + e]);
                }
                const double got = aclFloat16ToFloat(resultData[slot * rowSize + h * heads_dim + e]);
                const double err = std::isfinite(got) ? got - ref : INFINITY;
                errSq += err * err;
                refSq += ref * ref;
            }
    }
    int64_t changed = 0;
    for (int64_t row = 0; row < result_len; ++row)
        if (!written[row])
            for (int64_t i = 0; i < rowSize; ++i) changed += resultData[row * rowSize + i] != outputCacheRefHostData[row * rowSize + i];
    const double relFro = std::sqrt(errSq / refSq);
    LOG_PRINT("written slots: relative Frobenius error %.3g; %lld elements of other rows changed\n", relFro,
              static_cast<long long>(changed));
    bool failed = !(relFro <= 1e-3) || changed != 0;

    // 6. Release everything; every call must succeed.
    int cleanupErrors = 0;
    for (aclTensor* t : {input, weight, slotMapping, outputCacheRef, blockTable})
        cleanupErrors += aclDestroyTensor(t) != ACLNN_SUCCESS;
    cleanupErrors += aclDestroyIntArray(actSeqLen) != ACLNN_SUCCESS;
    for (void* p : {inputDeviceAddr, weightDeviceAddr, slotMappingDeviceAddr, outputCacheRefDeviceAddr, blockTableDeviceAddr})
        cleanupErrors += aclrtFree(p) != ACL_SUCCESS;
    if (workspaceSize > 0) cleanupErrors += aclrtFree(workspaceAddr) != ACL_SUCCESS;
    cleanupErrors += aclrtDestroyStream(stream) != ACL_SUCCESS;
    cleanupErrors += aclrtResetDevice(deviceId) != ACL_SUCCESS;
    cleanupErrors += aclFinalize() != ACL_SUCCESS;
    if (cleanupErrors != 0) {
        LOG_PRINT("%d cleanup calls failed (last: %s)\n", cleanupErrors, aclGetRecentErrMsg());
        failed = true;
    }
    LOG_PRINT("%s\n", failed ? "FAILED" : "OK");
    return failed ? 1 : 0;
}
