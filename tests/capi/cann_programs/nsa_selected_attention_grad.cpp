// aclnnNsaSelectedAttentionGrad as CANN's documentation calls it: written after the example
// program ("调用示例") of attention/nsa_selected_attention_grad/docs/aclnnNsaSelectedAttentionGrad.md
// in CANN's ops-transformer repository (also hiascend.com, aolapi/context/aclnnNsaSelectedAttentionGrad.md).
// Same header, the same runtime calls (aclInit, aclrtSetDevice, aclrtCreateStream - that page
// creates no context -, aclrtMalloc / aclrtMemcpy / aclCreateTensor with ACL_FORMAT_NCHW, the
// two-phase call, aclrtSynchronizeStream, aclrtMemcpy back, cleanup), one TND batch, sparseMode 0.
// Unlike the page it uses random inputs, derives the forward's attentionOut / softmaxMax /
// softmaxSum on the host in float64 (the backward's inputs must belong to one forward), poisons the
// outputs and checks dq, dk, dv against a float64 evaluation.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "acl/acl.h"
#include "aclnnop/aclnn_nsa_selected_attention_grad.h"

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
    // Fixed sequence: runtime, device, stream.
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
    // The page creates these tensors with ACL_FORMAT_NCHW; the format does not change their meaning.
    *tensor = aclCreateTensor(shape.data(), shape.size(), dataType, strides.data(), 0, aclFormat::ACL_FORMAT_NCHW,
                              shape.data(), shape.size(), *deviceAddr);
    CHECK_RET(*tensor != nullptr, LOG_PRINT("aclCreateTensor failed: %s\n", aclGetRecentErrMsg()); return 1);
    return 0;
}

// Relative Frobenius error and max error / max value of a fp16 result against float64.
bool Compare(const char* name, const std::vector<aclFloat16>& got, const std::vector<double>& ref) {
    double errSq = 0, refSq = 0, maxErr = 0, maxRef = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        const double x = aclFloat16ToFloat(got[i]);
        const double err = std::isfinite(x) ? std::fabs(x - ref[i]) : INFINITY;
        errSq += err * err;
        refSq += ref[i] * ref[i];
        maxErr = std::max(maxErr, err);
        maxRef = std::max(maxRef, std::fabs(ref[i]));
    }
    const double relFro = std::sqrt(errSq / refSq), relMax = maxErr / maxRef;
    LOG_PRINT("%s: relative Frobenius error %.3g, max error / max value %.3g\n", name, relFro, relMax);
    return relFro <= 2e-3 && relMax <= 8e-3;  // docs/spec/select_attention.md 7, fp16 gradients
}

int main() {
    // 1. Device and stream.
    int32_t deviceId = 0;
    aclrtStream stream = nullptr;
    auto ret = Init(deviceId, &stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("Init acl failed. ERROR: %d\n", ret); return 1);

    // 2. One batch: t1 query tokens over t2 keys, N1 = 4 query heads on N2 = 2 kv heads, D = 192
    //    for q, k and v (as on the page), blocks of 16 keys, 4 per token. Block 5 is never chosen,
    //    so its rows of dk and dv must come back exactly 0.
    const int64_t b = 1, s1 = 24, s2 = 128, t1 = b * s1, t2 = b * s2;
    const int64_t n1 = 4, n2 = 2, g = n1 / n2, d = 192;
    const int64_t sparseMode = 0;
    char inputLayout[5] = {'T', 'N', 'D', 0};
    const double scaleValue = 1.0 / std::sqrt(static_cast<double>(d));
    const int64_t selectedBlockSize = 16, selectedBlockCount = 4, unusedBlock = 5;
    const int32_t headNum = static_cast<int32_t>(n1);

    std::vector<int64_t> queryShape = {t1, n1, d}, keyShape = {t2, n2, d}, valueShape = {t2, n2, d},
                         attentionOutShape = {t1, n1, d}, attentionOutGradShape = {t1, n1, d},
                         softmaxMaxShape = {t1, n1, 8}, softmaxSumShape = {t1, n1, 8},
                         topkIndicesShape = {t1, n2, selectedBlockCount}, dqOutShape = {t1, n1, d},
                         dkOutShape = {t2, n2, d}, dvOutShape = {t2, n2, d};

    std::mt19937 rng(20250702u);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<aclFloat16> queryHostData(GetShapeSize(queryShape)), keyHostData(GetShapeSize(keyShape)),
        valueHostData(GetShapeSize(valueShape)), attentionOutGradHostData(GetShapeSize(attentionOutGradShape));
    for (auto* data : {&queryHostData, &keyHostData, &valueHostData, &attentionOutGradHostData})
        for (auto& x : *data) x = aclFloatToFloat16(normal(rng));
    std::vector<int32_t> topkIndicesHostData(GetShapeSize(topkIndicesShape));
    const int32_t blocks = static_cast<int32_t>(s2 / selectedBlockSize);
    for (int64_t row = 0; row < t1 * n2; ++row) {
        std::vector<int32_t> order;
        for (int32_t x = 0; x < blocks; ++x)
            if (x != unusedBlock) order.push_back(x);
        std::shuffle(order.begin(), order.end(), rng);
        for (int64_t j = 0; j < selectedBlockCount; ++j) topkIndicesHostData[row * selectedBlockCount + j] = order[j];
    }

    // The forward, in float64 on the host: probabilities per (token, head, slot key), then
    // attentionOut (rounded to fp16) and the statistics (rounded to fp32), the backward's inputs.
    auto q = [&](int64_t t, int64_t h, int64_t e) { return static_cast<double>(aclFloat16ToFloat(queryHostData[(t * n1 + h) * d + e])); };
    auto k = [&](int64_t p, int64_t h, int64_t e) { return static_cast<double>(aclFloat16ToFloat(keyHostData[(p * n2 + h) * d + e])); };
    auto v = [&](int64_t p, int64_t h, int64_t e) { return static_cast<double>(aclFloat16ToFloat(valueHostData[(p * n2 + h) * d + e])); };
    auto dO = [&](int64_t t, int64_t h, int64_t e) { return static_cast<double>(aclFloat16ToFloat(attentionOutGradHostData[(t * n1 + h) * d + e])); };
    auto keysOf = [&](int64_t t, int64_t kvHead) -> std::vector<int64_t> {
        std::vector<int64_t> keys;
        for (int64_t j = 0; j < selectedBlockCount; ++j)
            for (int64_t r = 0; r < selectedBlockSize; ++r)
                keys.push_back(topkIndicesHostData[(t * n2 + kvHead) * selectedBlockCount + j] * selectedBlockSize + r);
        return keys;
    };
    auto scores = [&](int64_t t, int64_t h, const std::vector<int64_t>& keys) -> std::vector<double> {
        std::vector<double> s(keys.size());
        for (size_t i = 0; i < keys.size(); ++i) {
            double dot = 0;
            for (int64_t e = 0; e < d; ++e) dot += q(t, h, e) * k(keys[i], h / g, e);
            s[i] = scaleValue * dot;
        }
        return s;
    };
    std::vector<aclFloat16> attentionOutHostData(GetShapeSize(attentionOutShape));
    std::vector<float> softmaxMaxHostData(GetShapeSize(softmaxMaxShape)), softmaxSumHostData(GetShapeSize(softmaxSumShape));
    for (int64_t t = 0; t < t1; ++t)
        for (int64_t h = 0; h < n1; ++h) {
            const std::vector<int64_t> keys = keysOf(t, h / g);
            const std::vector<double> s = scores(t, h, keys);
            const double mx = *std::max_element(s.begin(), s.end());
            double sum = 0;
            for (double x : s) sum += std::exp(x - mx);
            for (int64_t e = 0; e < d; ++e) {
                double o = 0;
                for (size_t i = 0; i < keys.size(); ++i) o += std::exp(s[i] - mx) / sum * v(keys[i], h / g, e);
                attentionOutHostData[(t * n1 + h) * d + e] = aclFloatToFloat16(static_cast<float>(o));
            }
            for (int i = 0; i < 8; ++i) {
                softmaxMaxHostData[(t * n1 + h) * 8 + i] = static_cast<float>(mx);
                softmaxSumHostData[(t * n1 + h) * 8 + i] = static_cast<float>(sum);
            }
        }
    // Outputs start as NaN: an element the operator does not write fails the check.
    std::vector<aclFloat16> dqOutHostData(GetShapeSize(dqOutShape), 0xFFFF), dkOutHostData(GetShapeSize(dkOutShape), 0xFFFF),
        dvOutHostData(GetShapeSize(dvOutShape), 0xFFFF);

    void *queryDeviceAddr = nullptr, *keyDeviceAddr = nullptr, *valueDeviceAddr = nullptr,
         *attentionOutDeviceAddr = nullptr, *attentionOutGradDeviceAddr = nullptr, *softmaxMaxDeviceAddr = nullptr,
         *softmaxSumDeviceAddr = nullptr, *topkIndicesDeviceAddr = nullptr, *dqOutDeviceAddr = nullptr,
         *dkOutDeviceAddr = nullptr, *dvOutDeviceAddr = nullptr;
    aclTensor *query = nullptr, *key = nullptr, *value = nullptr, *attentionOut = nullptr, *attentionOutGrad = nullptr,
              *softmaxMax = nullptr, *softmaxSum = nullptr, *topkIndices = nullptr, *dqOut = nullptr, *dkOut = nullptr,
              *dvOut = nullptr;
    ret = CreateAclTensor(queryHostData, queryShape, &queryDeviceAddr, aclDataType::ACL_FLOAT16, &query);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(keyHostData, keyShape, &keyDeviceAddr, aclDataType::ACL_FLOAT16, &key);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(valueHostData, valueShape, &valueDeviceAddr, aclDataType::ACL_FLOAT16, &value);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(attentionOutHostData, attentionOutShape, &attentionOutDeviceAddr, aclDataType::ACL_FLOAT16,
                          &attentionOut);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(attentionOutGradHostData, attentionOutGradShape, &attentionOutGradDeviceAddr,
                          aclDataType::ACL_FLOAT16, &attentionOutGrad);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(softmaxMaxHostData, softmaxMaxShape, &softmaxMaxDeviceAddr, aclDataType::ACL_FLOAT, &softmaxMax);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(softmaxSumHostData, softmaxSumShape, &softmaxSumDeviceAddr, aclDataType::ACL_FLOAT, &softmaxSum);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(topkIndicesHostData, topkIndicesShape, &topkIndicesDeviceAddr, aclDataType::ACL_INT32,
                          &topkIndices);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    int64_t tempQ[1] = {t1};
    int64_t tempK[1] = {t2};
    aclIntArray* actualSeqQLenOptional = aclCreateIntArray(tempQ, static_cast<uint64_t>(1));
    aclIntArray* actualSeqKvLenOptional = aclCreateIntArray(tempK, static_cast<uint64_t>(1));
    ret = CreateAclTensor(dqOutHostData, dqOutShape, &dqOutDeviceAddr, aclDataType::ACL_FLOAT16, &dqOut);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(dkOutHostData, dkOutShape, &dkOutDeviceAddr, aclDataType::ACL_FLOAT16, &dkOut);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(dvOutHostData, dvOutShape, &dvOutDeviceAddr, aclDataType::ACL_FLOAT16, &dvOut);
    CHECK_RET(ret == ACL_SUCCESS, return 1);

    // 3. The two-phase call.
    uint64_t workspaceSize = 0;
    aclOpExecutor* executor = nullptr;
    ret = aclnnNsaSelectedAttentionGradGetWorkspaceSize(query, key, value, attentionOut, attentionOutGrad, softmaxMax,
                                                        softmaxSum, topkIndices, actualSeqQLenOptional,
                                                        actualSeqKvLenOptional, nullptr, scaleValue, selectedBlockSize,
                                                        selectedBlockCount, headNum, inputLayout, sparseMode, dqOut,
                                                        dkOut, dvOut, &workspaceSize, &executor);
    CHECK_RET(ret == ACL_SUCCESS,
              LOG_PRINT("aclnnNsaSelectedAttentionGradGetWorkspaceSize failed. ERROR: %d (%s)\n", ret,
                        aclGetRecentErrMsg());
              return 1);
    void* workspaceAddr = nullptr;
    if (workspaceSize > 0) {
        ret = aclrtMalloc(&workspaceAddr, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST);
        CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("allocate workspace failed. ERROR: %d\n", ret); return 1);
    }
    ret = aclnnNsaSelectedAttentionGrad(workspaceAddr, workspaceSize, executor, stream);
    CHECK_RET(ret == ACL_SUCCESS,
              LOG_PRINT("aclnnNsaSelectedAttentionGrad failed. ERROR: %d (%s)\n", ret, aclGetRecentErrMsg()); return 1);

    // 4. Wait for the stream.
    ret = aclrtSynchronizeStream(stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtSynchronizeStream failed. ERROR: %d\n", ret); return 1);

    // 5. Results back to the host.
    std::vector<aclFloat16> dqResultData(GetShapeSize(dqOutShape)), dkResultData(GetShapeSize(dkOutShape)),
        dvResultData(GetShapeSize(dvOutShape));
    ret = aclrtMemcpy(dqResultData.data(), dqResultData.size() * sizeof(dqResultData[0]), dqOutDeviceAddr,
                      dqResultData.size() * sizeof(dqResultData[0]), ACL_MEMCPY_DEVICE_TO_HOST);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("copy out result dq from device to host failed. ERROR: %d\n", ret); return 1);
    ret = aclrtMemcpy(dkResultData.data(), dkResultData.size() * sizeof(dkResultData[0]), dkOutDeviceAddr,
                      dkResultData.size() * sizeof(dkResultData[0]), ACL_MEMCPY_DEVICE_TO_HOST);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("copy out result dk from device to host failed. ERROR: %d\n", ret); return 1);
    ret = aclrtMemcpy(dvResultData.data(), dvResultData.size() * sizeof(dvResultData[0]), dvOutDeviceAddr,
                      dvResultData.size() * sizeof(dvResultData[0]), ACL_MEMCPY_DEVICE_TO_HOST);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("copy out result dv from device to host failed. ERROR: %d\n", ret); return 1);

    // The backward in float64 (docs/spec/select_attention.md 6), from the stored statistics and the fp16 attentionOut.
    std::vector<double> dqRef(dqResultData.size(), 0.0), dkRef(dkResultData.size(), 0.0), dvRef(dvResultData.size(), 0.0);
    for (int64_t t = 0; t < t1; ++t)
        for (int64_t h = 0; h < n1; ++h) {
            const int64_t kvHead = h / g;
            const std::vector<int64_t> keys = keysOf(t, kvHead);
            const std::vector<double> s = scores(t, h, keys);
            const double mx = softmaxMaxHostData[(t * n1 + h) * 8], sum = softmaxSumHostData[(t * n1 + h) * 8];
            double rowDot = 0;  // dot(dO, o)
            for (int64_t e = 0; e < d; ++e)
                rowDot += dO(t, h, e) * aclFloat16ToFloat(attentionOutHostData[(t * n1 + h) * d + e]);
            for (size_t i = 0; i < keys.size(); ++i) {
                const double p = std::exp(s[i] - mx) / sum;
                double dp = 0;
                for (int64_t e = 0; e < d; ++e) dp += dO(t, h, e) * v(keys[i], kvHead, e);
                const double ds = p * (dp - rowDot);
                for (int64_t e = 0; e < d; ++e) {
                    dqRef[(t * n1 + h) * d + e] += scaleValue * ds * k(keys[i], kvHead, e);
                    dkRef[(keys[i] * n2 + kvHead) * d + e] += scaleValue * ds * q(t, h, e);
                    dvRef[(keys[i] * n2 + kvHead) * d + e] += p * dO(t, h, e);
                }
            }
        }
    bool failed = !Compare("dq", dqResultData, dqRef);
    failed = !Compare("dk", dkResultData, dkRef) || failed;
    failed = !Compare("dv", dvResultData, dvRef) || failed;
    int64_t nonZeroUnselected = 0;  // rows of a block nothing selected must be written as exact zeros
    for (int64_t p = unusedBlock * selectedBlockSize; p < (unusedBlock + 1) * selectedBlockSize; ++p)
        for (int64_t e = 0; e < n2 * d; ++e)
            nonZeroUnselected += dkResultData[p * n2 * d + e] != 0 || dvResultData[p * n2 * d + e] != 0;
    if (nonZeroUnselected != 0) {
        LOG_PRINT("%lld dk/dv elements of an unselected block are not 0\n", static_cast<long long>(nonZeroUnselected));
        failed = true;
    }

    // 6. Release tensors, arrays, device memory, stream, device and runtime; every call must succeed.
    int cleanupErrors = 0;
    for (aclTensor* t : {query, key, value, attentionOut, attentionOutGrad, softmaxMax, softmaxSum, topkIndices, dqOut,
                         dkOut, dvOut})
        cleanupErrors += aclDestroyTensor(t) != ACLNN_SUCCESS;
    cleanupErrors += aclDestroyIntArray(actualSeqQLenOptional) != ACLNN_SUCCESS;
    cleanupErrors += aclDestroyIntArray(actualSeqKvLenOptional) != ACLNN_SUCCESS;
    for (void* p : {queryDeviceAddr, keyDeviceAddr, valueDeviceAddr, attentionOutDeviceAddr, attentionOutGradDeviceAddr,
                    softmaxMaxDeviceAddr, softmaxSumDeviceAddr, topkIndicesDeviceAddr, dqOutDeviceAddr,
                    dkOutDeviceAddr, dvOutDeviceAddr})
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
