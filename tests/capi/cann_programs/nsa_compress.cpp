// aclnnNsaCompress as CANN's documentation calls it: written after the example program ("调用示例")
// of attention/nsa_compress/docs/aclnnNsaCompress.md in CANN's ops-transformer repository (also
// hiascend.com, aolapi/context/aclnnNsaCompress.md). Same headers, the same runtime calls (aclInit,
// aclrtSetDevice, aclrtCreateContext, aclrtSetCurrentContext, aclrtCreateStream, aclrtMalloc /
// aclrtMemcpy / aclCreateTensor with null strides, the two-phase call, aclrtSynchronizeStream,
// aclrtMemcpy back, cleanup with aclrtDestroyContext), TND with cumulative lengths (actSeqLenType
// 0). Unlike the page it uses two batches and random inputs, poisons the output and checks it
// against a float64 evaluation (docs/spec/compress.md). Sizes are within CANN's limits.
//
// NOT RUN YET: OpenNSA does not implement aclnnNsaCompress yet; the build compiles this file only
// (tests/capi/cann_programs/CMakeLists.txt). The result check has never run.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "acl/acl.h"
#include "aclnnop/aclnn_nsa_compress.h"

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
    auto ret = aclrtMalloc(deviceAddr, size, ACL_MEM_MALLOC_HUGE_FIRST);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtMalloc failed. ERROR: %d\n", ret); return ret);
    ret = aclrtMemcpy(*deviceAddr, size, hostData.data(), size, ACL_MEMCPY_HOST_TO_DEVICE);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtMemcpy failed. ERROR: %d\n", ret); return ret);
    // As on the page: no strides (a dense row-major view).
    *tensor = aclCreateTensor(shape.data(), shape.size(), dataType, nullptr, 0, aclFormat::ACL_FORMAT_ND, shape.data(),
                              shape.size(), *deviceAddr);
    CHECK_RET(*tensor != nullptr, LOG_PRINT("aclCreateTensor failed: %s\n", aclGetRecentErrMsg()); return 1);
    return ACL_SUCCESS;
}

int main() {
    // 1. Device, context and stream.
    int32_t deviceId = 0;
    aclrtContext context = nullptr;
    aclrtStream stream = nullptr;
    auto ret = Init(deviceId, &context, &stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("Init acl failed. ERROR: %d\n", ret); return 1);

    // 2. Inputs and outputs: windows of 32 tokens every 16, two batches of 64 and 100 tokens.
    int64_t compressBlockSize = 32;
    int64_t compressStride = 16;
    int64_t actSeqLenType = 0;  // 0: cumulative ends; 1: per-batch lengths
    char layout[] = "TND";
    const std::vector<int64_t> sampleLens = {64, 100};
    const int64_t headNum = 4, headDim = 32;

    std::vector<int64_t> actSeqHostData;
    std::vector<int64_t> batchStart, outputStart;  // first input row and first output row per batch
    int64_t total = 0, outputNum = 0;
    for (int64_t len : sampleLens) {
        batchStart.push_back(total);
        outputStart.push_back(outputNum);
        total += len;
        actSeqHostData.push_back(total);
        if (len >= compressBlockSize) outputNum += (len - compressBlockSize) / compressStride + 1;
    }
    std::vector<int64_t> inputShape = {total, headNum, headDim};
    std::vector<int64_t> weightShape = {compressBlockSize, headNum};
    std::vector<int64_t> outputShape = {outputNum, headNum, headDim};

    std::mt19937 rng(20250703u);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> uniform(-0.2f, 0.2f);
    std::vector<aclFloat16> inputHostData(GetShapeSize(inputShape)), weightHostData(GetShapeSize(weightShape));
    for (auto& x : inputHostData) x = aclFloatToFloat16(normal(rng));
    for (auto& x : weightHostData) x = aclFloatToFloat16(uniform(rng));
    std::vector<aclFloat16> outputHostData(GetShapeSize(outputShape), 0xFFFF);  // NaN: unwritten shows

    void *inputDeviceAddr = nullptr, *weightDeviceAddr = nullptr, *outputDeviceAddr = nullptr;
    aclTensor *input = nullptr, *weight = nullptr, *output = nullptr;
    ret = CreateAclTensor(inputHostData, inputShape, &inputDeviceAddr, aclDataType::ACL_FLOAT16, &input);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(weightHostData, weightShape, &weightDeviceAddr, aclDataType::ACL_FLOAT16, &weight);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    aclIntArray* actSeqLenOptional = aclCreateIntArray(actSeqHostData.data(), actSeqHostData.size());
    CHECK_RET(actSeqLenOptional != nullptr, LOG_PRINT("aclCreateIntArray failed: %s\n", aclGetRecentErrMsg()); return 1);
    ret = CreateAclTensor(outputHostData, outputShape, &outputDeviceAddr, aclDataType::ACL_FLOAT16, &output);
    CHECK_RET(ret == ACL_SUCCESS, return 1);

    // 3. The two-phase call.
    uint64_t workspaceSize = 0;
    aclOpExecutor* executor = nullptr;
    ret = aclnnNsaCompressGetWorkspaceSize(input, weight, actSeqLenOptional, layout, compressBlockSize, compressStride,
                                           actSeqLenType, output, &workspaceSize, &executor);
    CHECK_RET(ret == ACL_SUCCESS,
              LOG_PRINT("aclnnNsaCompressGetWorkspaceSize failed. ERROR: %d (%s)\n", ret, aclGetRecentErrMsg());
              return 1);
    void* workspaceAddr = nullptr;
    if (workspaceSize > 0) {
        ret = aclrtMalloc(&workspaceAddr, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST);
        CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("allocate workspace failed. ERROR: %d\n", ret); return 1);
    }
    ret = aclnnNsaCompress(workspaceAddr, workspaceSize, executor, stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclnnNsaCompress failed. ERROR: %d (%s)\n", ret, aclGetRecentErrMsg());
              return 1);

    // 4. Wait for the stream.
    ret = aclrtSynchronizeStream(stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtSynchronizeStream failed. ERROR: %d\n", ret); return 1);

    // 5. The result, against float64: output[o_b + c, h, e] = sum_r weight[r, h] * input[s_b + c*d + r, h, e].
    std::vector<aclFloat16> resultData(GetShapeSize(outputShape));
    ret = aclrtMemcpy(resultData.data(), resultData.size() * sizeof(resultData[0]), outputDeviceAddr,
                      resultData.size() * sizeof(resultData[0]), ACL_MEMCPY_DEVICE_TO_HOST);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("copy result from device to host failed. ERROR: %d\n", ret); return 1);
    double errSq = 0, refSq = 0;
    for (size_t b = 0; b < sampleLens.size(); ++b) {
        const int64_t windows =
            sampleLens[b] >= compressBlockSize ? (sampleLens[b] - compressBlockSize) / compressStride + 1 : 0;
        for (int64_t c = 0; c < windows; ++c)
            for (int64_t h = 0; h < headNum; ++h)
                for (int64_t e = 0; e < headDim; ++e) {
                    double ref = 0;
                    for (int64_t r = 0; r < compressBlockSize; ++r)
                        ref += static_cast<double>(aclFloat16ToFloat(weightHostData[r * headNum + h])) *
                               aclFloat16ToFloat(
                                   inputHostData[((batchStart[b] + c * compressStride + r) * headNum + h) * headDim + e]);
                    const double got =
                        aclFloat16ToFloat(resultData[((outputStart[b] + c) * headNum + h) * headDim + e]);
                    const double err = std::isfinite(got) ? got - ref : INFINITY;
                    errSq += err * err;
                    refSq += ref * ref;
                }
    }
    const double relFro = std::sqrt(errSq / refSq);
    LOG_PRINT("output [%lld, %lld, %lld]: relative Frobenius error %.3g\n", static_cast<long long>(outputNum),
              static_cast<long long>(headNum), static_cast<long long>(headDim), relFro);
    bool failed = !(relFro <= 1e-3);  // docs/spec/README.md, fp16

    // 6. Release tensors, the array, device memory, stream, context, device and runtime.
    int cleanupErrors = 0;
    for (aclTensor* t : {input, weight, output}) cleanupErrors += aclDestroyTensor(t) != ACLNN_SUCCESS;
    cleanupErrors += aclDestroyIntArray(actSeqLenOptional) != ACLNN_SUCCESS;
    for (void* p : {inputDeviceAddr, weightDeviceAddr, outputDeviceAddr}) cleanupErrors += aclrtFree(p) != ACL_SUCCESS;
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
