// aclnnNsaSelectedAttention as CANN's documentation calls it: written after the example program
// ("调用示例") of the operator's page, attention/nsa_selected_attention/docs/aclnnNsaSelectedAttention.md
// in CANN's ops-transformer repository (also hiascend.com, aolapi/context/aclnnNsaSelectedAttention.md).
// Same headers, the same runtime calls in the same order (aclInit, aclrtSetDevice,
// aclrtCreateContext, aclrtSetCurrentContext, aclrtCreateStream, aclrtMalloc / aclrtMemcpy /
// aclCreateTensor, the two-phase call, aclrtSynchronizeStream, aclrtMemcpy back, cleanup), TND
// varlen with two batches, causal sparseMode 2. Unlike the page it uses random inputs, poisons the
// outputs, checks them against a float64 evaluation and passes the context handle itself (not its
// address) to aclrtDestroyContext.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "acl/acl.h"
#include "aclnnop/aclnn_nsa_selected_attention.h"

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

int Init(int32_t deviceId, aclrtContext* context, aclrtStream* stream) {
    // Fixed sequence: runtime, device, context, stream.
    auto ret = aclInit(nullptr);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclInit failed. ERROR: %d\n", ret); return ret);
    ret = aclrtSetDevice(deviceId);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtSetDevice failed. ERROR: %d\n", ret); return ret);
    ret = aclrtCreateContext(context, deviceId);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtCreateContext failed. ERROR: %d\n", ret); return ret);
    ret = aclrtSetCurrentContext(*context);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtSetCurrentContext failed. ERROR: %d\n", ret); return ret);
    ret = aclrtCreateStream(stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtCreateStream failed. ERROR: %d\n", ret); return ret);
    return 0;
}

template <typename T>
int CreateAclTensor(const std::vector<T>& hostData, const std::vector<int64_t>& shape, void** deviceAddr,
                    aclDataType dataType, aclTensor** tensor) {
    auto size = GetShapeSize(shape) * sizeof(T);
    // Device memory, filled from the host.
    auto ret = aclrtMalloc(deviceAddr, size, ACL_MEM_MALLOC_HUGE_FIRST);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtMalloc failed. ERROR: %d\n", ret); return ret);
    ret = aclrtMemcpy(*deviceAddr, size, hostData.data(), size, ACL_MEMCPY_HOST_TO_DEVICE);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtMemcpy failed. ERROR: %d\n", ret); return ret);

    // Strides of a contiguous tensor.
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
    // 1. Device, context and stream.
    int32_t deviceId = 0;
    aclrtContext context = nullptr;
    aclrtStream stream = nullptr;
    auto ret = Init(deviceId, &context, &stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("Init acl failed. ERROR: %d\n", ret); return 1);

    // 2. Inputs and outputs. Two batches (cumulative lengths, TND), GQA with G = 2, CANN's head
    //    dims 192 / 128; each token selects 4 blocks of 16 keys of its batch (one slot may be -1).
    const int64_t batch = 2;
    const std::vector<int64_t> actualSeqQLenVec = {24, 64};
    const std::vector<int64_t> actualSeqKvLenVec = {64, 160};
    const int64_t t1 = actualSeqQLenVec.back(), t2 = actualSeqKvLenVec.back();
    const int64_t n2 = 2, g = 2, n1 = n2 * g, d1 = 192, d2 = 128;
    const int64_t selectedBlockSize = 16, selectedBlockCount = 4;
    const double scaleValue = 1.0 / std::sqrt(static_cast<double>(d1));
    const int64_t headNum = n1;
    const int64_t sparseMode = 2;  // causal
    char layOut[] = "TND";

    std::vector<int64_t> qShape = {t1, n1, d1};
    std::vector<int64_t> kShape = {t2, n2, d1};
    std::vector<int64_t> vShape = {t2, n2, d2};
    std::vector<int64_t> topkIndicesShape = {t1, n2, selectedBlockCount};
    std::vector<int64_t> attentionOutShape = {t1, n1, d2};
    std::vector<int64_t> softmaxMaxShape = {t1, n1, 8};
    std::vector<int64_t> softmaxSumShape = {t1, n1, 8};

    std::mt19937 rng(20250701u);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<aclFloat16> qHostData(GetShapeSize(qShape)), kHostData(GetShapeSize(kShape)),
        vHostData(GetShapeSize(vShape));
    for (auto* data : {&qHostData, &kHostData, &vHostData})
        for (auto& x : *data) x = aclFloatToFloat16(normal(rng));
    std::vector<int32_t> topkIndicesHostData(GetShapeSize(topkIndicesShape), -1);
    for (int64_t b = 0; b < batch; ++b) {
        const int64_t qBegin = b == 0 ? 0 : actualSeqQLenVec[b - 1];
        const int64_t kvLen = actualSeqKvLenVec[b] - (b == 0 ? 0 : actualSeqKvLenVec[b - 1]);
        const int32_t blocks = static_cast<int32_t>((kvLen + selectedBlockSize - 1) / selectedBlockSize);
        for (int64_t t = qBegin; t < actualSeqQLenVec[b]; ++t)
            for (int64_t h = 0; h < n2; ++h) {
                std::vector<int32_t> order(blocks);
                for (int32_t i = 0; i < blocks; ++i) order[i] = i;
                std::shuffle(order.begin(), order.end(), rng);
                const int64_t used = (rng() % 4 == 0) ? selectedBlockCount - 1 : selectedBlockCount;
                for (int64_t j = 0; j < used; ++j) topkIndicesHostData[(t * n2 + h) * selectedBlockCount + j] = order[j];
            }
    }
    // Outputs start as NaN: an element the operator does not write fails the check below.
    std::vector<aclFloat16> attentionOutHostData(GetShapeSize(attentionOutShape), 0xFFFF);
    std::vector<float> softmaxMaxHostData(GetShapeSize(softmaxMaxShape), NAN);
    std::vector<float> softmaxSumHostData(GetShapeSize(softmaxSumShape), NAN);

    void *qDeviceAddr = nullptr, *kDeviceAddr = nullptr, *vDeviceAddr = nullptr, *topkIndicesDeviceAddr = nullptr,
         *attentionOutDeviceAddr = nullptr, *softmaxMaxDeviceAddr = nullptr, *softmaxSumDeviceAddr = nullptr;
    aclTensor *q = nullptr, *k = nullptr, *v = nullptr, *topkIndices = nullptr, *attenMaskOptional = nullptr,
              *attentionOut = nullptr, *softmaxMax = nullptr, *softmaxSum = nullptr;
    aclIntArray* actualSeqQLenOptional = aclCreateIntArray(actualSeqQLenVec.data(), actualSeqQLenVec.size());
    aclIntArray* actualSeqKvLenOptional = aclCreateIntArray(actualSeqKvLenVec.data(), actualSeqKvLenVec.size());
    CHECK_RET(actualSeqQLenOptional != nullptr && actualSeqKvLenOptional != nullptr,
              LOG_PRINT("aclCreateIntArray failed: %s\n", aclGetRecentErrMsg()); return 1);

    ret = CreateAclTensor(qHostData, qShape, &qDeviceAddr, aclDataType::ACL_FLOAT16, &q);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(kHostData, kShape, &kDeviceAddr, aclDataType::ACL_FLOAT16, &k);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(vHostData, vShape, &vDeviceAddr, aclDataType::ACL_FLOAT16, &v);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(topkIndicesHostData, topkIndicesShape, &topkIndicesDeviceAddr, aclDataType::ACL_INT32,
                          &topkIndices);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(attentionOutHostData, attentionOutShape, &attentionOutDeviceAddr, aclDataType::ACL_FLOAT16,
                          &attentionOut);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(softmaxMaxHostData, softmaxMaxShape, &softmaxMaxDeviceAddr, aclDataType::ACL_FLOAT,
                          &softmaxMax);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(softmaxSumHostData, softmaxSumShape, &softmaxSumDeviceAddr, aclDataType::ACL_FLOAT,
                          &softmaxSum);
    CHECK_RET(ret == ACL_SUCCESS, return 1);

    // 3. The two-phase call.
    uint64_t workspaceSize = 0;
    aclOpExecutor* executor = nullptr;
    ret = aclnnNsaSelectedAttentionGetWorkspaceSize(q, k, v, topkIndices, attenMaskOptional, actualSeqQLenOptional,
                                                    actualSeqKvLenOptional, scaleValue, headNum, layOut, sparseMode,
                                                    selectedBlockSize, selectedBlockCount, softmaxMax, softmaxSum,
                                                    attentionOut, &workspaceSize, &executor);
    CHECK_RET(ret == ACL_SUCCESS,
              LOG_PRINT("aclnnNsaSelectedAttentionGetWorkspaceSize failed. ERROR: %d (%s)\n", ret, aclGetRecentErrMsg());
              return 1);
    void* workspaceAddr = nullptr;
    if (workspaceSize > 0) {
        ret = aclrtMalloc(&workspaceAddr, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST);
        CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("allocate workspace failed. ERROR: %d\n", ret); return 1);
    }
    ret = aclnnNsaSelectedAttention(workspaceAddr, workspaceSize, executor, stream);
    CHECK_RET(ret == ACL_SUCCESS,
              LOG_PRINT("aclnnNsaSelectedAttention failed. ERROR: %d (%s)\n", ret, aclGetRecentErrMsg()); return 1);

    // 4. Wait for the stream.
    ret = aclrtSynchronizeStream(stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtSynchronizeStream failed. ERROR: %d\n", ret); return 1);

    // 5. Results back to the host, checked against float64 (docs/spec/select_attention.md 5 and 7: fp16 out within 1e-3
    //    relative Frobenius error and 4e-3 of the largest value; log-sum-exp within 1e-3).
    std::vector<aclFloat16> outResult;
    std::vector<float> maxResult, sumResult;
    CHECK_RET(CopyOutResult(attentionOutShape, attentionOutDeviceAddr, outResult) == 0 &&
                  CopyOutResult(softmaxMaxShape, softmaxMaxDeviceAddr, maxResult) == 0 &&
                  CopyOutResult(softmaxSumShape, softmaxSumDeviceAddr, sumResult) == 0,
              return 1);
    double errSq = 0, refSq = 0, maxErr = 0, maxRef = 0, maxLseErr = 0;
    int64_t badStats = 0, emptyRows = 0;
    for (int64_t b = 0; b < batch; ++b) {
        const int64_t qBegin = b == 0 ? 0 : actualSeqQLenVec[b - 1];
        const int64_t kvBegin = b == 0 ? 0 : actualSeqKvLenVec[b - 1];
        const int64_t kvLen = actualSeqKvLenVec[b] - kvBegin;
        for (int64_t t = qBegin; t < actualSeqQLenVec[b]; ++t) {
            const int64_t pos = t - qBegin;
            for (int64_t h = 0; h < n1; ++h) {
                const int64_t kvHead = h / g;
                std::vector<int64_t> keys;  // visible key rows, slot order, duplicates kept
                for (int64_t j = 0; j < selectedBlockCount; ++j) {
                    const int32_t x = topkIndicesHostData[(t * n2 + kvHead) * selectedBlockCount + j];
                    if (x < 0) continue;
                    for (int64_t r = 0; r < selectedBlockSize; ++r) {
                        const int64_t p = x * selectedBlockSize + r;
                        if (p < kvLen && p <= pos) keys.push_back(kvBegin + p);
                    }
                }
                std::vector<double> s(keys.size());
                double mx = -INFINITY;
                for (size_t i = 0; i < keys.size(); ++i) {
                    double dot = 0;
                    for (int64_t e = 0; e < d1; ++e)
                        dot += static_cast<double>(aclFloat16ToFloat(qHostData[(t * n1 + h) * d1 + e])) *
                               aclFloat16ToFloat(kHostData[(keys[i] * n2 + kvHead) * d1 + e]);
                    s[i] = scaleValue * dot;
                    mx = std::max(mx, s[i]);
                }
                double sum = 0;
                for (double& x : s) sum += (x = std::exp(x - mx));
                for (int64_t e = 0; e < d2; ++e) {
                    double ref = 0;
                    for (size_t i = 0; i < keys.size(); ++i)
                        ref += s[i] / sum * aclFloat16ToFloat(vHostData[(keys[i] * n2 + kvHead) * d2 + e]);
                    const double got = aclFloat16ToFloat(outResult[(t * n1 + h) * d2 + e]);
                    if (keys.empty() && got != 0.0) ++badStats;  // an empty row's out is exactly 0
                    const double err = std::isfinite(got) ? std::fabs(got - ref) : INFINITY;
                    errSq += err * err;
                    refSq += ref * ref;
                    maxErr = std::max(maxErr, err);
                    maxRef = std::max(maxRef, std::fabs(ref));
                }
                const float* gotMax = &maxResult[(t * n1 + h) * 8];
                const float* gotSum = &sumResult[(t * n1 + h) * 8];
                for (int i = 1; i < 8; ++i)
                    if (!(gotMax[i] == gotMax[0]) || !(gotSum[i] == gotSum[0])) ++badStats;
                if (keys.empty()) {  // no visible key: out 0 (checked above), max = sum = 0
                    ++emptyRows;
                    if (gotMax[0] != 0.0f || gotSum[0] != 0.0f) ++badStats;
                } else {
                    const double lse = std::log(static_cast<double>(gotSum[0])) + gotMax[0];
                    const double err = std::isfinite(lse) ? std::fabs(lse - (mx + std::log(sum))) : INFINITY;
                    maxLseErr = std::max(maxLseErr, err);
                }
            }
        }
    }
    const double relFro = std::sqrt(errSq / refSq), relMax = maxErr / maxRef;
    LOG_PRINT("attentionOut: relative Frobenius error %.3g, max error / max value %.3g; "
              "log-sum-exp max error %.3g; %lld rows without a visible key\n",
              relFro, relMax, maxLseErr, static_cast<long long>(emptyRows));
    bool failed = !(relFro <= 1e-3) || !(relMax <= 4e-3) || !(maxLseErr <= 1e-3) || badStats != 0;
    if (badStats != 0) LOG_PRINT("%lld softmax statistics rows or empty rows are wrong\n", static_cast<long long>(badStats));

    // 6. Release tensors, device memory, stream, context, device and runtime; every call must succeed.
    int cleanupErrors = 0;
    for (aclTensor* t : {q, k, v, topkIndices, attentionOut, softmaxMax, softmaxSum})
        cleanupErrors += aclDestroyTensor(t) != ACLNN_SUCCESS;
    cleanupErrors += aclDestroyIntArray(actualSeqQLenOptional) != ACLNN_SUCCESS;
    cleanupErrors += aclDestroyIntArray(actualSeqKvLenOptional) != ACLNN_SUCCESS;
    for (void* p : {qDeviceAddr, kDeviceAddr, vDeviceAddr, topkIndicesDeviceAddr, attentionOutDeviceAddr,
                    softmaxMaxDeviceAddr, softmaxSumDeviceAddr})
        cleanupErrors += aclrtFree(p) != ACL_SUCCESS;
    if (workspaceSize > 0) cleanupErrors += aclrtFree(workspaceAddr) != ACL_SUCCESS;
    cleanupErrors += aclrtDestroyStream(stream) != ACL_SUCCESS;
    cleanupErrors += aclrtDestroyContext(context) != ACL_SUCCESS;
    cleanupErrors += aclrtResetDevice(deviceId) != ACL_SUCCESS;
    cleanupErrors += aclFinalize() != ACL_SUCCESS;
    if (cleanupErrors != 0) {
        LOG_PRINT("%d cleanup calls failed (last: %s)\n", cleanupErrors, aclGetRecentErrMsg());
        failed = true;
    }
    LOG_PRINT("%s\n", failed ? "FAILED" : "OK");
    return failed ? 1 : 0;
}
