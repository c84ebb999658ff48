// aclnnNsaSelectedAttentionInfer through the header name of CANN's earlier documentation: written
// after the example program ("调用示例") of the earlier version of
// attention/nsa_selected_attention_infer/docs/aclnnNsaSelectedAttentionInfer.md in CANN's
// ops-transformer repository, which includes aclnnop/aclnn_nsa_select_attention_infer.h. Same
// headers (acl/acl.h, aclnn/opdev/fp16_t.h, that header), the same runtime calls (aclInit,
// aclrtSetDevice, aclrtCreateStream, aclrtMalloc / aclrtMemcpy / aclCreateTensor, the two-phase
// call, aclrtSynchronizeStream, aclrtMemcpy back, cleanup). Where the companion program
// (nsa_selected_attention_infer.cpp) covers BSND with one token, this one covers the page's
// multi-token case - 2 query tokens per batch, the earlier one not seeing the newest cached token -
// in layout BSH (query [B, S, N1 * D], key/value [blocks, pageBlockSize, N2 * D]), a partial last
// block, and checks the output against float64 (docs/spec/decoding.md). Sizes are within CANN's limits.
//
// Run by ctest (CannProgram.<name>); it passes on exit code 0.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "acl/acl.h"
#include "aclnn/opdev/fp16_t.h"
#include "aclnnop/aclnn_nsa_select_attention_infer.h"

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
    int64_t shapeSize = 1;
    for (auto i : shape) {
        shapeSize *= i;
    }
    return shapeSize;
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
    // 1. Device and stream.
    int32_t deviceId = 0;
    aclrtStream stream = nullptr;
    auto ret = Init(deviceId, &stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("Init acl failed. ERROR: %d\n", ret); return 1);

    // 2. Two batches with 70 and 128 cached tokens (pages of 64), 2 query tokens each (the newest
    //    two positions); selection blocks of 32, 3 slots per kv head.
    const int64_t batch = 2, s1 = 2;
    const std::vector<int64_t> kvSeqLens = {70, 128};
    std::vector<int64_t> qSeqLens(batch, s1);
    aclIntArray* actualCmpKvSeqLen = aclCreateIntArray(kvSeqLens.data(), kvSeqLens.size());
    aclIntArray* actualCmpQSeqLen = aclCreateIntArray(qSeqLens.data(), qSeqLens.size());
    CHECK_RET(actualCmpKvSeqLen != nullptr && actualCmpQSeqLen != nullptr,
              LOG_PRINT("aclCreateIntArray failed: %s\n", aclGetRecentErrMsg()); return 1);
    const int64_t d1 = 192, d2 = 128, g = 2, n2 = 2;
    int64_t numHeads = n2 * g;
    int64_t blockSize = 64;  // pageBlockSize
    int64_t selectBlockSize = 32, selectBlockCount = 3;
    const int64_t blockTableLength = (kvSeqLens[1] + blockSize - 1) / blockSize;
    int64_t numBlocks = 0;
    for (int64_t len : kvSeqLens) numBlocks += (len + blockSize - 1) / blockSize;

    std::mt19937 rng(20250709u);
    std::vector<int32_t> pool(numBlocks);
    for (int64_t i = 0; i < numBlocks; ++i) pool[i] = static_cast<int32_t>(i);
    std::shuffle(pool.begin(), pool.end(), rng);
    std::vector<int32_t> blockTableOptionalHostData(batch * blockTableLength, -1);
    size_t nextPage = 0;
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t p = 0; p < (kvSeqLens[b] + blockSize - 1) / blockSize; ++p)
            blockTableOptionalHostData[b * blockTableLength + p] = pool[nextPage++];

    std::vector<int64_t> queryShape = {batch, s1, numHeads * d1};
    std::vector<int64_t> keyShape = {numBlocks, blockSize, n2 * d1};
    std::vector<int64_t> valueShape = {numBlocks, blockSize, n2 * d2};
    std::vector<int64_t> topkIndicesShape = {batch, s1, n2, selectBlockCount};
    std::vector<int64_t> blockTableOptionalShape = {batch, blockTableLength};
    std::vector<int64_t> outputShape = {batch, s1, numHeads * d2};

    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<op::fp16_t> queryHostData(GetShapeSize(queryShape)), keyHostData(GetShapeSize(keyShape)),
        valueHostData(GetShapeSize(valueShape));
    for (auto* data : {&queryHostData, &keyHostData, &valueHostData})
        for (auto& x : *data) x = normal(rng);
    std::vector<op::fp16_t> outputHostData(GetShapeSize(outputShape), NAN);  // poison
    // Per (batch, token, kv head): 3 distinct blocks. The last block of batch 0 (positions 64..69)
    // is always chosen, so the earlier token's causal limit (it does not see position 69) matters.
    std::vector<int32_t> topkIndicesHostData;
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t s = 0; s < s1; ++s)
            for (int64_t h = 0; h < n2; ++h) {
                const int32_t blocks = static_cast<int32_t>((kvSeqLens[b] + selectBlockSize - 1) / selectBlockSize);
                std::vector<int32_t> order;
                for (int32_t x = 0; x < blocks - 1; ++x) order.push_back(x);
                std::shuffle(order.begin(), order.end(), rng);
                order.insert(order.begin() + static_cast<long>(rng() % 3), blocks - 1);
                for (int64_t k = 0; k < selectBlockCount; ++k) topkIndicesHostData.push_back(order[k]);
            }

    double scaleValue = 1.0 / std::sqrt(static_cast<double>(d1));
    int64_t sparseMod = 0;
    std::string sLayerOut = "BSH";
    char layOut[8];
    std::strcpy(layOut, sLayerOut.c_str());

    void *queryDeviceAddr = nullptr, *keyDeviceAddr = nullptr, *valueDeviceAddr = nullptr,
         *blockTableOptionalDeviceAddr = nullptr, *outputDeviceAddr = nullptr, *topkIndicesDeviceAddr = nullptr;
    aclTensor *queryTensor = nullptr, *keyTensor = nullptr, *valueTensor = nullptr, *blockTableOptionalTensor = nullptr,
              *outputTensor = nullptr, *topkIndicesTensor = nullptr;
    uint64_t workspaceSize = 0;
    void* workspaceAddr = nullptr;
    ret = CreateAclTensor(queryHostData, queryShape, &queryDeviceAddr, aclDataType::ACL_FLOAT16, &queryTensor);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("failed. ERROR: %d\n", ret); return 1);
    ret = CreateAclTensor(keyHostData, keyShape, &keyDeviceAddr, aclDataType::ACL_FLOAT16, &keyTensor);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("failed. ERROR: %d\n", ret); return 1);
    ret = CreateAclTensor(valueHostData, valueShape, &valueDeviceAddr, aclDataType::ACL_FLOAT16, &valueTensor);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("failed. ERROR: %d\n", ret); return 1);
    ret = CreateAclTensor(blockTableOptionalHostData, blockTableOptionalShape, &blockTableOptionalDeviceAddr,
                          aclDataType::ACL_INT32, &blockTableOptionalTensor);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("failed. ERROR: %d\n", ret); return 1);
    ret = CreateAclTensor(outputHostData, outputShape, &outputDeviceAddr, aclDataType::ACL_FLOAT16, &outputTensor);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("failed. ERROR: %d\n", ret); return 1);
    ret = CreateAclTensor(topkIndicesHostData, topkIndicesShape, &topkIndicesDeviceAddr, aclDataType::ACL_INT32,
                          &topkIndicesTensor);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("failed. ERROR: %d\n", ret); return 1);

    // 3. The two-phase call.
    aclOpExecutor* executor = nullptr;
    ret = aclnnNsaSelectedAttentionInferGetWorkspaceSize(
        queryTensor, keyTensor, valueTensor, topkIndicesTensor, nullptr, blockTableOptionalTensor, actualCmpQSeqLen,
        actualCmpKvSeqLen, layOut, numHeads, n2, selectBlockSize, selectBlockCount, blockSize, scaleValue, sparseMod,
        outputTensor, &workspaceSize, &executor);
    CHECK_RET(ret == ACL_SUCCESS,
              LOG_PRINT("aclnnNsaSelectedAttentionInferGetWorkspaceSize failed. ERROR: %d (%s)\n", ret,
                        aclGetRecentErrMsg());
              return 1);
    if (workspaceSize > 0) {
        ret = aclrtMalloc(&workspaceAddr, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST);
        CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("allocate workspace failed. ERROR: %d\n", ret); return 1);
    }
    ret = aclnnNsaSelectedAttentionInfer(workspaceAddr, workspaceSize, executor, stream);
    CHECK_RET(ret == ACL_SUCCESS,
              LOG_PRINT("aclnnNsaSelectedAttentionInfer failed. ERROR: %d (%s)\n", ret, aclGetRecentErrMsg()); return 1);

    // 4. Wait for the stream.
    ret = aclrtSynchronizeStream(stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtSynchronizeStream failed. ERROR: %d\n", ret); return 1);

    // 5. The output against float64. Token s of a batch with L cached tokens and Q query tokens
    //    sees positions p < L - (Q - 1 - s).
    std::vector<op::fp16_t> resultData(GetShapeSize(outputShape), 0);
    ret = aclrtMemcpy(resultData.data(), resultData.size() * sizeof(resultData[0]), outputDeviceAddr,
                      resultData.size() * sizeof(resultData[0]), ACL_MEMCPY_DEVICE_TO_HOST);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("copy [attn] result from device to host failed. ERROR: %d\n", ret); return 1);
    auto cached = [&](const std::vector<op::fp16_t>& pages, int64_t dim, int64_t b, int64_t p, int64_t h2,
                      int64_t e) -> double {
        const int64_t page = blockTableOptionalHostData[b * blockTableLength + p / blockSize];
        return static_cast<double>(pages[(page * blockSize + p % blockSize) * n2 * dim + h2 * dim + e]);
    };
    double errSq = 0, refSq = 0, maxErr = 0, maxRef = 0;
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t s = 0; s < s1; ++s) {
            const int64_t visibleEnd = kvSeqLens[b] - (qSeqLens[b] - 1 - s);
            for (int64_t h = 0; h < numHeads; ++h) {
                const int64_t h2 = h / g;
                std::vector<int64_t> keys;
                for (int64_t k = 0; k < selectBlockCount; ++k) {
                    const int32_t x = topkIndicesHostData[((b * s1 + s) * n2 + h2) * selectBlockCount + k];
                    for (int64_t r = 0; r < selectBlockSize && x * selectBlockSize + r < visibleEnd; ++r)
                        keys.push_back(x * selectBlockSize + r);
                }
                std::vector<double> sc(keys.size());
                for (size_t i = 0; i < keys.size(); ++i) {
                    double dot = 0;
                    for (int64_t e = 0; e < d1; ++e)
                        dot += static_cast<double>(queryHostData[(b * s1 + s) * numHeads * d1 + h * d1 + e]) *
                               cached(keyHostData, d1, b, keys[i], h2, e);
                    sc[i] = scaleValue * dot;
                }
                const double mx = *std::max_element(sc.begin(), sc.end());
                double sum = 0;
                for (double x : sc) sum += std::exp(x - mx);
                for (int64_t e = 0; e < d2; ++e) {
                    double ref = 0;
                    for (size_t i = 0; i < keys.size(); ++i)
                        ref += std::exp(sc[i] - mx) / sum * cached(valueHostData, d2, b, keys[i], h2, e);
                    const double got = static_cast<float>(resultData[(b * s1 + s) * numHeads * d2 + h * d2 + e]);
                    const double err = std::isfinite(got) ? std::fabs(got - ref) : INFINITY;
                    errSq += err * err;
                    refSq += ref * ref;
                    maxErr = std::max(maxErr, err);
                    maxRef = std::max(maxRef, std::fabs(ref));
                }
            }
        }
    const double relFro = std::sqrt(errSq / refSq), relMax = maxErr / maxRef;
    LOG_PRINT("output: relative Frobenius error %.3g, max error / max value %.3g\n", relFro, relMax);
    bool failed = !(relFro <= 1e-3) || !(relMax <= 4e-3);
    for (int64_t i = 0; i < 4; i++) {
        std::cout << "index: " << i << ": " << static_cast<float>(resultData[i]) << std::endl;
    }

    // 6. Release everything; every call must succeed.
    int cleanupErrors = 0;
    for (aclTensor* t : {queryTensor, keyTensor, valueTensor, outputTensor, topkIndicesTensor, blockTableOptionalTensor})
        cleanupErrors += aclDestroyTensor(t) != ACLNN_SUCCESS;
    for (aclIntArray* a : {actualCmpKvSeqLen, actualCmpQSeqLen}) cleanupErrors += aclDestroyIntArray(a) != ACLNN_SUCCESS;
    for (void* p : {queryDeviceAddr, keyDeviceAddr, valueDeviceAddr, outputDeviceAddr, topkIndicesDeviceAddr,
                    blockTableOptionalDeviceAddr})
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
