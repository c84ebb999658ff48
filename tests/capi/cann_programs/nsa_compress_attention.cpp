// aclnnNsaCompressAttention as CANN's documentation calls it: written after the example program
// ("调用示例") of attention/nsa_compress_attention/docs/aclnnNsaCompressAttention.md in CANN's
// ops-transformer repository (also hiascend.com, aolapi/context/aclnnNsaCompressAttention.md). Same
// headers (acl/acl.h, aclnn/opdev/fp16_t.h, the operator's), host data in std::vector<op::fp16_t>,
// the same runtime calls (aclInit, aclrtSetDevice, aclrtCreateStream - that page creates no
// context -, aclrtMalloc / aclrtMemcpy / aclCreateTensor, the two-phase call, aclrtSynchronizeStream,
// aclrtMemcpy back, cleanup), uint8 masks, sparseMode 1. Unlike the page it passes the NSA causal
// mask and forces block 0 and each query's own block through topkMask, uses random inputs, poisons
// the outputs and checks them against float64 (docs/spec/README.md, 3.3 and 3.4; topk set-wise as
// 0.6 says). Sizes are within CANN's limits.
//
// Run by ctest as CannProgram.nsa_compress_attention (tests/capi/cann_programs/CMakeLists.txt).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <random>
#include <vector>

#include "acl/acl.h"
#include "aclnn/opdev/fp16_t.h"
#include "aclnnop/aclnn_nsa_compress_attention.h"

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

template <typename T>
int CopyOutResult(const std::vector<int64_t>& shape, void* deviceAddr, std::vector<T>& resultData) {
    resultData.assign(GetShapeSize(shape), T());
    auto ret = aclrtMemcpy(resultData.data(), resultData.size() * sizeof(T), deviceAddr, resultData.size() * sizeof(T),
                           ACL_MEMCPY_DEVICE_TO_HOST);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("copy result from device to host failed. ERROR: %d\n", ret); return ret);
    return 0;
}

int main() {
    // 1. Device and stream.
    int32_t deviceId = 0;
    aclrtStream stream = nullptr;
    auto ret = Init(deviceId, &stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("Init acl failed. ERROR: %d\n", ret); return 1);

    // 2. One batch of 512 query tokens over the 31 compressed tokens of 512 raw tokens (windows of
    //    32 every 16); selection blocks of 64 raw tokens (m = 4 compressed tokens, 8 blocks), 4 kept.
    const int64_t S1 = 512, rawKv = 512;
    const int64_t N1 = 4, N2 = 2, G = N1 / N2, D1 = 64, D2 = 32;
    const int64_t compressBlockSize = 32, compressStride = 16, selectBlockSize = 64, selectBlockCount = 4;
    const int64_t T1 = S1, T2 = (rawKv - compressBlockSize) / compressStride + 1;  // 31
    const int64_t m = selectBlockSize / compressStride, n = compressBlockSize / compressStride;
    const int64_t NS = (T2 + m - 1) / m;  // selection blocks of the batch
    std::vector<int64_t> qShape = {T1, N1, D1};
    std::vector<int64_t> kShape = {T2, N2, D1};
    std::vector<int64_t> vShape = {T2, N2, D2};
    std::vector<int64_t> attenmaskShape = {S1, T2};  // [maxS1, maxC]
    std::vector<int64_t> topkmaskShape = {S1, NS};   // [maxS1, maxNS]
    std::vector<int64_t> softmaxMaxShape = {T1, N1, 8};
    std::vector<int64_t> softmaxSumShape = {T1, N1, 8};
    std::vector<int64_t> attenOutShape = {T1, N1, D2};
    std::vector<int64_t> topkIndicesOutShape = {T1, N2, selectBlockCount};

    std::mt19937 rng(20250705u);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<op::fp16_t> qHostData(T1 * N1 * D1), kHostData(T2 * N2 * D1), vHostData(T2 * N2 * D2);
    for (auto* data : {&qHostData, &kHostData, &vHostData})
        for (auto& x : *data) x = normal(rng);
    // The NSA causal rule as a mask (1 = hidden): compressed token j covers raw tokens
    // [j*d, j*d + l) and is visible to query i once its window is complete.
    std::vector<uint8_t> attenmaskHostData(S1 * T2);
    for (int64_t i = 0; i < S1; ++i)
        for (int64_t j = 0; j < T2; ++j) attenmaskHostData[i * T2 + j] = j * compressStride + compressBlockSize - 1 > i;
    std::vector<uint8_t> topkmaskHostData(S1 * NS, 0);
    for (int64_t i = 0; i < S1; ++i) {
        topkmaskHostData[i * NS] = 1;                           // block 0
        topkmaskHostData[i * NS + i / selectBlockSize] = 1;     // the query's own block
    }
    // Outputs start poisoned: NaN statistics and output, topk out of range.
    std::vector<float> softmaxMaxHostData(N1 * T1 * 8, NAN);
    std::vector<float> softmaxSumHostData(N1 * T1 * 8, NAN);
    std::vector<op::fp16_t> attenOutHostData(T1 * N1 * D2, NAN);
    std::vector<int32_t> topkIndicesHostData(T1 * N2 * selectBlockCount, 1 << 30);

    void *qDeviceAddr = nullptr, *kDeviceAddr = nullptr, *vDeviceAddr = nullptr, *attenmaskDeviceAddr = nullptr,
         *topkmaskDeviceAddr = nullptr, *softmaxMaxDeviceAddr = nullptr, *softmaxSumDeviceAddr = nullptr,
         *attentionOutDeviceAddr = nullptr, *topkIndicesOutDeviceAddr = nullptr;
    aclTensor *q = nullptr, *k = nullptr, *v = nullptr, *attenmask = nullptr, *topkmask = nullptr,
              *softmaxMax = nullptr, *softmaxSum = nullptr, *attentionOut = nullptr, *topkIndicesOut = nullptr;
    ret = CreateAclTensor(qHostData, qShape, &qDeviceAddr, aclDataType::ACL_FLOAT16, &q);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(kHostData, kShape, &kDeviceAddr, aclDataType::ACL_FLOAT16, &k);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(vHostData, vShape, &vDeviceAddr, aclDataType::ACL_FLOAT16, &v);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(attenmaskHostData, attenmaskShape, &attenmaskDeviceAddr, aclDataType::ACL_UINT8, &attenmask);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(topkmaskHostData, topkmaskShape, &topkmaskDeviceAddr, aclDataType::ACL_UINT8, &topkmask);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(softmaxMaxHostData, softmaxMaxShape, &softmaxMaxDeviceAddr, aclDataType::ACL_FLOAT, &softmaxMax);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(softmaxSumHostData, softmaxSumShape, &softmaxSumDeviceAddr, aclDataType::ACL_FLOAT, &softmaxSum);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(attenOutHostData, attenOutShape, &attentionOutDeviceAddr, aclDataType::ACL_FLOAT16,
                          &attentionOut);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(topkIndicesHostData, topkIndicesOutShape, &topkIndicesOutDeviceAddr, aclDataType::ACL_INT32,
                          &topkIndicesOut);
    CHECK_RET(ret == ACL_SUCCESS, return 1);

    std::vector<int64_t> actualSeqQLenVec(1, T1);
    auto actualSeqQLen = aclCreateIntArray(actualSeqQLenVec.data(), actualSeqQLenVec.size());
    std::vector<int64_t> actualCmpKvSeqVec(1, T2);
    auto actualCmpKvSeqLen = aclCreateIntArray(actualCmpKvSeqVec.data(), actualCmpKvSeqVec.size());
    std::vector<int64_t> actualSelKvSeqVec(1, NS);
    auto actualSelKvSeqLen = aclCreateIntArray(actualSelKvSeqVec.data(), actualSelKvSeqVec.size());
    CHECK_RET(actualSeqQLen != nullptr && actualCmpKvSeqLen != nullptr && actualSelKvSeqLen != nullptr,
              LOG_PRINT("aclCreateIntArray failed: %s\n", aclGetRecentErrMsg()); return 1);

    double scale = 1.0 / std::sqrt(static_cast<double>(D1));
    int64_t headNum = N1;
    char inputLayout[5] = {'T', 'N', 'D', 0};
    int64_t sparseMode = 1;

    // 3. The two-phase call.
    uint64_t workspaceSize = 0;
    aclOpExecutor* executor = nullptr;
    ret = aclnnNsaCompressAttentionGetWorkspaceSize(q, k, v, attenmask, topkmask, actualSeqQLen, actualCmpKvSeqLen,
                                                    actualSelKvSeqLen, scale, headNum, inputLayout, sparseMode,
                                                    compressBlockSize, compressStride, selectBlockSize, selectBlockCount,
                                                    softmaxMax, softmaxSum, attentionOut, topkIndicesOut,
                                                    &workspaceSize, &executor);
    CHECK_RET(ret == ACL_SUCCESS,
              LOG_PRINT("aclnnNsaCompressAttentionGetWorkspaceSize failed. ERROR: %d (%s)\n", ret, aclGetRecentErrMsg());
              return 1);
    void* workspaceAddr = nullptr;
    if (workspaceSize > 0) {
        ret = aclrtMalloc(&workspaceAddr, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST);
        CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("allocate workspace failed. ERROR: %d\n", ret); return 1);
    }
    ret = aclnnNsaCompressAttention(workspaceAddr, workspaceSize, executor, stream);
    CHECK_RET(ret == ACL_SUCCESS,
              LOG_PRINT("aclnnNsaCompressAttention failed. ERROR: %d (%s)\n", ret, aclGetRecentErrMsg()); return 1);

    // 4. Wait for the stream.
    ret = aclrtSynchronizeStream(stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtSynchronizeStream failed. ERROR: %d\n", ret); return 1);

    // 5. Results, against float64.
    std::vector<op::fp16_t> outResult;
    std::vector<float> maxResult, sumResult;
    std::vector<int32_t> topkResult;
    CHECK_RET(CopyOutResult(attenOutShape, attentionOutDeviceAddr, outResult) == 0 &&
                  CopyOutResult(softmaxMaxShape, softmaxMaxDeviceAddr, maxResult) == 0 &&
                  CopyOutResult(softmaxSumShape, softmaxSumDeviceAddr, sumResult) == 0 &&
                  CopyOutResult(topkIndicesOutShape, topkIndicesOutDeviceAddr, topkResult) == 0,
              return 1);
    // The importance weight of compressed offset t inside a selection block (docs/spec/README.md).
    auto weightOf = [&](int64_t t) { return static_cast<double>(std::min(std::min(t + 1, n), m + n - 1 - t)); };
    double errSq = 0, refSq = 0, maxErr = 0, maxRef = 0, maxLseErr = 0;
    int64_t badStats = 0, badTopk = 0;
    for (int64_t i = 0; i < S1; ++i) {
        std::vector<std::vector<double> > probs(N1, std::vector<double>(T2, 0.0));  // fp64 P per head
        for (int64_t h = 0; h < N1; ++h) {
            std::vector<double> s(T2, 0.0);
            std::vector<int64_t> visible;
            double mx = -INFINITY;
            for (int64_t j = 0; j < T2; ++j) {
                if (attenmaskHostData[i * T2 + j]) continue;
                double dot = 0;
                for (int64_t e = 0; e < D1; ++e)
                    dot += static_cast<double>(qHostData[(i * N1 + h) * D1 + e]) *
                           static_cast<double>(kHostData[(j * N2 + h / G) * D1 + e]);
                s[j] = scale * dot;
                mx = std::max(mx, s[j]);
                visible.push_back(j);
            }
            double sum = 0;
            for (int64_t j : visible) sum += std::exp(s[j] - mx);
            for (int64_t j : visible) probs[h][j] = std::exp(s[j] - mx) / sum;
            for (int64_t e = 0; e < D2; ++e) {
                double ref = 0;
                for (int64_t j : visible) ref += probs[h][j] * static_cast<double>(vHostData[(j * N2 + h / G) * D2 + e]);
                const double got = static_cast<float>(outResult[(i * N1 + h) * D2 + e]);
                if (visible.empty() && got != 0.0) ++badStats;  // no visible token: out = 0
                const double err = std::isfinite(got) ? std::fabs(got - ref) : INFINITY;
                errSq += err * err;
                refSq += ref * ref;
                maxErr = std::max(maxErr, err);
                maxRef = std::max(maxRef, std::fabs(ref));
            }
            // Statistics are stored head-major inside the batch: row h * S1 + i (one batch).
            const float* gotMax = &maxResult[(h * S1 + i) * 8];
            const float* gotSum = &sumResult[(h * S1 + i) * 8];
            for (int r = 1; r < 8; ++r)
                if (!(gotMax[r] == gotMax[0]) || !(gotSum[r] == gotSum[0])) ++badStats;
            if (visible.empty()) {
                if (gotMax[0] != 0.0f || gotSum[0] != 0.0f) ++badStats;
            } else {
                const double lse = std::log(static_cast<double>(gotSum[0])) + gotMax[0];
                maxLseErr = std::max(maxLseErr, std::isfinite(lse) ? std::fabs(lse - mx - std::log(sum)) : INFINITY);
            }
        }
        // Block scores per kv head, forced blocks first; topk checked as a set with the slack of
        // docs/spec/README.md, and in descending order within that slack.
        for (int64_t h2 = 0; h2 < N2; ++h2) {
            std::vector<double> score(NS, 0.0);
            for (int64_t J = 0; J < NS; ++J) {
                if (topkmaskHostData[i * NS + J]) {
                    score[J] = INFINITY;
                    continue;
                }
                for (int64_t g = 0; g < G; ++g)
                    for (int64_t t = 0; t <= m + n - 2; ++t) {
                        const int64_t j = (J + 1) * m - t;
                        if (j >= 0 && j < T2) score[J] += weightOf(t) * probs[h2 * G + g][j];
                    }
            }
            std::vector<double> sorted(score);
            std::sort(sorted.begin(), sorted.end(), [](double a, double b) { return a > b; });
            const double kth = sorted[selectBlockCount - 1];
            const double slack = std::isinf(kth) ? 0.0 : 1e-5 * std::max(1.0, kth);
            const int32_t* got = &topkResult[(i * N2 + h2) * selectBlockCount];
            for (int64_t a = 0; a < selectBlockCount; ++a) {
                const bool inRange = got[a] >= 0 && got[a] < NS;
                bool repeated = false;
                for (int64_t b = 0; b < a; ++b) repeated = repeated || got[b] == got[a];
                if (!inRange || repeated || !(score[got[a]] >= kth - slack)) {
                    ++badTopk;
                    continue;
                }
                if (a > 0 && got[a - 1] >= 0 && got[a - 1] < NS && score[got[a - 1]] < score[got[a]] - slack) ++badTopk;
            }
        }
    }
    const double relFro = std::sqrt(errSq / refSq), relMax = maxErr / maxRef;
    LOG_PRINT("attentionOut: relative Frobenius error %.3g, max error / max value %.3g; log-sum-exp max error %.3g; "
              "%lld bad statistics, %lld bad topk slots\n",
              relFro, relMax, maxLseErr, static_cast<long long>(badStats), static_cast<long long>(badTopk));
    bool failed = !(relFro <= 1e-3) || !(relMax <= 4e-3) || !(maxLseErr <= 1e-3) || badStats != 0 || badTopk != 0;
    std::cout << "first outputs: " << static_cast<float>(outResult[(S1 - 1) * N1 * D2]) << ", topk "
              << static_cast<int32_t>(topkResult[(S1 - 1) * N2 * selectBlockCount]) << std::endl;

    // 6. Release everything; every call must succeed.
    int cleanupErrors = 0;
    for (aclTensor* t : {q, k, v, attenmask, topkmask, softmaxMax, softmaxSum, attentionOut, topkIndicesOut})
        cleanupErrors += aclDestroyTensor(t) != ACLNN_SUCCESS;
    for (aclIntArray* a : {actualSeqQLen, actualCmpKvSeqLen, actualSelKvSeqLen})
        cleanupErrors += aclDestroyIntArray(a) != ACLNN_SUCCESS;
    for (void* p : {qDeviceAddr, kDeviceAddr, vDeviceAddr, attenmaskDeviceAddr, topkmaskDeviceAddr,
                    softmaxMaxDeviceAddr, softmaxSumDeviceAddr, attentionOutDeviceAddr, topkIndicesOutDeviceAddr})
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
