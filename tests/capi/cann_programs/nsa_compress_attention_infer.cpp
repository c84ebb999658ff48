// aclnnNsaCompressAttentionInfer as CANN's documentation calls it: written after the example
// program ("调用示例") of attention/nsa_compress_attention_infer/docs/aclnnNsaCompressAttentionInfer.md
// in CANN's ops-transformer repository (also hiascend.com, aolapi/context/aclnnNsaCompressAttentionInfer.md).
// Same headers (acl/acl.h, aclnn/opdev/fp16_t.h, the operator's), std::vector<op::fp16_t> host data,
// the same runtime calls (aclInit, aclrtSetDevice, aclrtCreateStream - no context on that page -,
// aclrtMalloc / aclrtMemcpy / aclCreateTensor, the two-phase call with only blockTable and the
// compressed lengths given, aclrtSynchronizeStream, aclrtMemcpy back, cleanup), layout TND with one
// query token per batch, paged compressed key/value [blocks, pageBlockSize, N2 * D]. Unlike the page
// it uses a shuffled block table, random inputs and different lengths per batch, reads topk back as
// int32 (the page reads it as fp16_t), poisons the outputs and checks them against float64
// (docs/spec/README.md, 0.5, 4.3). Sizes are within CANN's limits.

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
#include "aclnnop/aclnn_nsa_compress_attention_infer.h"

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

    // 2. Three decoding batches, one query token each, with 20, 37 and 30 compressed tokens in
    //    pages of 16; windows of 32 every 16, selection blocks of 64 (m = 4), 4 blocks kept.
    const std::vector<int64_t> cmpLens = {20, 37, 30};
    const int64_t batchSize = static_cast<int64_t>(cmpLens.size());
    const int64_t headDimsQK = 64, headDimsV = 32;
    int64_t numHeads = 4, numKeyValueHeads = 2, selectBlockSize = 64, selectBlockCount = 4;
    int64_t compressBlockSize = 32, compressStride = 16, pageBlockSize = 16, sparseMod = 0;
    double scaleValue = 1.0 / std::sqrt(static_cast<double>(headDimsQK));
    std::string sLayerOut = "TND";
    char layOut[8];
    std::strcpy(layOut, sLayerOut.c_str());
    const int64_t G = numHeads / numKeyValueHeads;
    const int64_t m = selectBlockSize / compressStride, n = compressBlockSize / compressStride;

    // Block table: each batch's pages, drawn from a shuffled pool; entries past a batch's last
    // page are -1 (never read).
    const int64_t maxNumBlocksPerSeq = (*std::max_element(cmpLens.begin(), cmpLens.end()) + pageBlockSize - 1) / pageBlockSize;
    int64_t blockNum = 1;  // one spare page nobody uses
    for (int64_t len : cmpLens) blockNum += (len + pageBlockSize - 1) / pageBlockSize;
    std::mt19937 rng(20250706u);
    std::vector<int32_t> pool(blockNum);
    for (int64_t i = 0; i < blockNum; ++i) pool[i] = static_cast<int32_t>(i);
    std::shuffle(pool.begin(), pool.end(), rng);
    std::vector<int32_t> blockTableOptionalHostData(batchSize * maxNumBlocksPerSeq, -1);
    size_t nextPage = 0;
    for (int64_t b = 0; b < batchSize; ++b)
        for (int64_t p = 0; p < (cmpLens[b] + pageBlockSize - 1) / pageBlockSize; ++p)
            blockTableOptionalHostData[b * maxNumBlocksPerSeq + p] = pool[nextPage++];

    std::vector<int64_t> queryShape = {batchSize, numHeads, headDimsQK};
    std::vector<int64_t> keyShape = {blockNum, pageBlockSize, numKeyValueHeads * headDimsQK};
    std::vector<int64_t> valueShape = {blockNum, pageBlockSize, numKeyValueHeads * headDimsV};
    std::vector<int64_t> blockTableOptionalShape = {batchSize, maxNumBlocksPerSeq};
    std::vector<int64_t> outputShape = {batchSize, numHeads, headDimsV};
    std::vector<int64_t> topkIndicesShape = {batchSize, numKeyValueHeads, selectBlockCount};
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<op::fp16_t> queryHostData(GetShapeSize(queryShape)), keyHostData(GetShapeSize(keyShape)),
        valueHostData(GetShapeSize(valueShape));
    for (auto* data : {&queryHostData, &keyHostData, &valueHostData})
        for (auto& x : *data) x = normal(rng);
    std::vector<op::fp16_t> outputHostData(GetShapeSize(outputShape), NAN);        // poison
    std::vector<int32_t> topkIndicesHostData(GetShapeSize(topkIndicesShape), 1 << 30);  // poison

    void *queryDeviceAddr = nullptr, *keyDeviceAddr = nullptr, *valueDeviceAddr = nullptr,
         *blockTableOptionalDeviceAddr = nullptr, *outputDeviceAddr = nullptr, *topkIndicesDeviceAddr = nullptr;
    aclTensor *queryTensor = nullptr, *keyTensor = nullptr, *valueTensor = nullptr, *blockTableOptionalTensor = nullptr,
              *outputTensor = nullptr, *topkIndicesTensor = nullptr;
    ret = CreateAclTensor(queryHostData, queryShape, &queryDeviceAddr, aclDataType::ACL_FLOAT16, &queryTensor);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(keyHostData, keyShape, &keyDeviceAddr, aclDataType::ACL_FLOAT16, &keyTensor);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(valueHostData, valueShape, &valueDeviceAddr, aclDataType::ACL_FLOAT16, &valueTensor);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(blockTableOptionalHostData, blockTableOptionalShape, &blockTableOptionalDeviceAddr,
                          aclDataType::ACL_INT32, &blockTableOptionalTensor);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(outputHostData, outputShape, &outputDeviceAddr, aclDataType::ACL_FLOAT16, &outputTensor);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(topkIndicesHostData, topkIndicesShape, &topkIndicesDeviceAddr, aclDataType::ACL_INT32,
                          &topkIndicesTensor);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    auto actualCmpKvSeqLen = aclCreateIntArray(cmpLens.data(), cmpLens.size());
    CHECK_RET(actualCmpKvSeqLen != nullptr, LOG_PRINT("aclCreateIntArray failed: %s\n", aclGetRecentErrMsg()); return 1);

    // 3. The two-phase call (no mask, no query lengths: one token per batch; no raw lengths).
    uint64_t workspaceSize = 0;
    aclOpExecutor* executor = nullptr;
    ret = aclnnNsaCompressAttentionInferGetWorkspaceSize(
        queryTensor, keyTensor, valueTensor, nullptr, blockTableOptionalTensor, nullptr, actualCmpKvSeqLen, nullptr,
        nullptr, numHeads, numKeyValueHeads, selectBlockSize, selectBlockCount, compressBlockSize, compressStride,
        scaleValue, layOut, pageBlockSize, sparseMod, outputTensor, topkIndicesTensor, &workspaceSize, &executor);
    CHECK_RET(ret == ACL_SUCCESS,
              LOG_PRINT("aclnnNsaCompressAttentionInferGetWorkspaceSize failed. ERROR: %d (%s)\n", ret,
                        aclGetRecentErrMsg());
              return 1);
    void* workspaceAddr = nullptr;
    if (workspaceSize > 0) {
        ret = aclrtMalloc(&workspaceAddr, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST);
        CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("allocate workspace failed. ERROR: %d\n", ret); return 1);
    }
    ret = aclnnNsaCompressAttentionInfer(workspaceAddr, workspaceSize, executor, stream);
    CHECK_RET(ret == ACL_SUCCESS,
              LOG_PRINT("aclnnNsaCompressAttentionInfer failed. ERROR: %d (%s)\n", ret, aclGetRecentErrMsg()); return 1);

    // 4. Wait for the stream.
    ret = aclrtSynchronizeStream(stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtSynchronizeStream failed. ERROR: %d\n", ret); return 1);

    // 5. Results, against float64.
    std::vector<op::fp16_t> resultData(GetShapeSize(outputShape), 0);
    ret = aclrtMemcpy(resultData.data(), resultData.size() * sizeof(resultData[0]), outputDeviceAddr,
                      resultData.size() * sizeof(resultData[0]), ACL_MEMCPY_DEVICE_TO_HOST);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("copy [attn] result from device to host failed. ERROR: %d\n", ret); return 1);
    std::vector<int32_t> topkResultData(GetShapeSize(topkIndicesShape), 0);
    ret = aclrtMemcpy(topkResultData.data(), topkResultData.size() * sizeof(topkResultData[0]), topkIndicesDeviceAddr,
                      topkResultData.size() * sizeof(topkResultData[0]), ACL_MEMCPY_DEVICE_TO_HOST);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("copy [top k] result from device to host failed. ERROR: %d\n", ret); return 1);

    // Compressed token j of batch b, kv head h2, element e, read through the block table.
    auto cached = [&](const std::vector<op::fp16_t>& pages, int64_t dim, int64_t b, int64_t j, int64_t h2, int64_t e) -> double {
        const int64_t page = blockTableOptionalHostData[b * maxNumBlocksPerSeq + j / pageBlockSize];
        return static_cast<double>(pages[(page * pageBlockSize + j % pageBlockSize) * numKeyValueHeads * dim + h2 * dim + e]);
    };
    auto weightOf = [&](int64_t t) { return static_cast<double>(std::min(std::min(t + 1, n), m + n - 1 - t)); };
    double errSq = 0, refSq = 0, maxErr = 0, maxRef = 0;
    int64_t badTopk = 0;
    for (int64_t b = 0; b < batchSize; ++b) {
        const int64_t C = cmpLens[b];
        const int64_t NS = ((C - 1) * compressStride + compressBlockSize + selectBlockSize - 1) / selectBlockSize;
        std::vector<std::vector<double> > probs(numHeads, std::vector<double>(C));
        for (int64_t h = 0; h < numHeads; ++h) {
            std::vector<double> s(C);
            for (int64_t j = 0; j < C; ++j) {
                double dot = 0;
                for (int64_t e = 0; e < headDimsQK; ++e)
                    dot += static_cast<double>(queryHostData[(b * numHeads + h) * headDimsQK + e]) *
                           cached(keyHostData, headDimsQK, b, j, h / G, e);
                s[j] = scaleValue * dot;
            }
            const double mx = *std::max_element(s.begin(), s.end());
            double sum = 0;
            for (int64_t j = 0; j < C; ++j) sum += std::exp(s[j] - mx);
            for (int64_t j = 0; j < C; ++j) probs[h][j] = std::exp(s[j] - mx) / sum;
            for (int64_t e = 0; e < headDimsV; ++e) {
                double ref = 0;
                for (int64_t j = 0; j < C; ++j) ref += probs[h][j] * cached(valueHostData, headDimsV, b, j, h / G, e);
                const double got = static_cast<float>(resultData[(b * numHeads + h) * headDimsV + e]);
                const double err = std::isfinite(got) ? std::fabs(got - ref) : INFINITY;
                errSq += err * err;
                refSq += ref * ref;
                maxErr = std::max(maxErr, err);
                maxRef = std::max(maxRef, std::fabs(ref));
            }
        }
        // Scores; the first block and the last two are forced, and come first in index order.
        for (int64_t h2 = 0; h2 < numKeyValueHeads; ++h2) {
            std::vector<double> score(NS, 0.0);
            for (int64_t J = 0; J < NS; ++J) {
                if (J == 0 || J >= NS - 2) {
                    score[J] = INFINITY;
                    continue;
                }
                for (int64_t g = 0; g < G; ++g)
                    for (int64_t t = 0; t <= m + n - 2; ++t) {
                        const int64_t j = (J + 1) * m - t;
                        if (j >= 0 && j < C) score[J] += weightOf(t) * probs[h2 * G + g][j];
                    }
            }
            std::vector<double> sorted(score);
            std::sort(sorted.begin(), sorted.end(), [](double x, double y) { return x > y; });
            const double kth = sorted[selectBlockCount - 1];
            const double slack = std::isinf(kth) ? 0.0 : 1e-5 * std::max(1.0, kth);
            const int32_t* got = &topkResultData[(b * numKeyValueHeads + h2) * selectBlockCount];
            const int32_t forced[3] = {0, static_cast<int32_t>(NS - 2), static_cast<int32_t>(NS - 1)};
            for (int a = 0; a < 3; ++a) badTopk += got[a] != forced[a];
            for (int64_t a = 3; a < selectBlockCount; ++a) {
                bool repeated = false;
                for (int64_t c = 0; c < a; ++c) repeated = repeated || got[c] == got[a];
                if (got[a] < 0 || got[a] >= NS || repeated || !(score[got[a]] >= kth - slack)) ++badTopk;
            }
        }
    }
    const double relFro = std::sqrt(errSq / refSq), relMax = maxErr / maxRef;
    LOG_PRINT("output: relative Frobenius error %.3g, max error / max value %.3g; %lld bad topk slots\n", relFro, relMax,
              static_cast<long long>(badTopk));
    bool failed = !(relFro <= 1e-3) || !(relMax <= 4e-3) || badTopk != 0;
    for (int64_t i = 0; i < 4; i++) {
        std::cout << "index: " << i << ": " << static_cast<float>(resultData[i]) << ", topk index " << i << ": "
                  << topkResultData[i] << std::endl;
    }

    // 6. Release everything; every call must succeed.
    int cleanupErrors = 0;
    for (aclTensor* t : {queryTensor, keyTensor, valueTensor, blockTableOptionalTensor, outputTensor, topkIndicesTensor})
        cleanupErrors += aclDestroyTensor(t) != ACLNN_SUCCESS;
    cleanupErrors += aclDestroyIntArray(actualCmpKvSeqLen) != ACLNN_SUCCESS;
    for (void* p : {queryDeviceAddr, keyDeviceAddr, valueDeviceAddr, blockTableOptionalDeviceAddr, outputDeviceAddr,
                    topkIndicesDeviceAddr})
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
