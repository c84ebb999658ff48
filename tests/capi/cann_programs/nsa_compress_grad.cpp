// aclnnNsaCompressGrad as CANN's documentation calls it: written after the example program
// ("调用示例") of attention/nsa_compress_grad/docs/aclnnNsaCompressGrad.md in CANN's
// ops-transformer repository (also hiascend.com, aolapi/context/aclnnNsaCompressGrad.md). Same
// headers, the same runtime calls (aclInit, aclrtSetDevice, aclrtCreateContext,
// aclrtSetCurrentContext, aclrtCreateStream, aclrtMalloc / aclrtMemcpy / aclCreateTensor, the
// two-phase call with the layout after the attributes, aclrtSynchronizeStream, aclrtMemcpy back,
// cleanup with aclrtDestroyContext), cumulative lengths with a leading 0 as on the page. Unlike the
// page it fills the FLOAT16 tensors with fp16 data (the page copies float vectors into them), uses
// random values, poisons both outputs and checks them against float64 (docs/spec/compress.md).
//
// NOT RUN YET: OpenNSA does not implement aclnnNsaCompressGrad yet; the build compiles this file
// only (tests/capi/cann_programs/CMakeLists.txt). The result check has never run.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "acl/acl.h"
#include "aclnnop/aclnn_nsa_compress_grad.h"

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
                    aclDataType dataType, aclTensor** xOrResult) {
    auto size = GetShapeSize(shape) * sizeof(T);
    auto ret = aclrtMalloc(deviceAddr, size, ACL_MEM_MALLOC_HUGE_FIRST);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtMalloc failed. ERROR: %d\n", ret); return ret);
    ret = aclrtMemcpy(*deviceAddr, size, hostData.data(), size, ACL_MEMCPY_HOST_TO_DEVICE);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtMemcpy failed. ERROR: %d\n", ret); return ret);
    std::vector<int64_t> strides(shape.size(), 1);
    for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; i--) {
        strides[i] = shape[i + 1] * strides[i + 1];
    }
    *xOrResult = aclCreateTensor(shape.data(), shape.size(), dataType, strides.data(), 0, aclFormat::ACL_FORMAT_ND,
                                 shape.data(), shape.size(), *deviceAddr);
    CHECK_RET(*xOrResult != nullptr, LOG_PRINT("aclCreateTensor failed: %s\n", aclGetRecentErrMsg()); return 1);
    return 0;
}

double RelativeError(const std::vector<aclFloat16>& got, const std::vector<double>& ref) {
    double errSq = 0, refSq = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        const double x = aclFloat16ToFloat(got[i]);
        const double err = std::isfinite(x) ? x - ref[i] : INFINITY;
        errSq += err * err;
        refSq += ref[i] * ref[i];
    }
    return std::sqrt(errSq / refSq);
}

int main() {
    // 1. Device, context and stream.
    int32_t deviceId = 0;
    aclrtContext context = nullptr;
    aclrtStream stream = nullptr;
    auto ret = Init(deviceId, &context, &stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("Init acl failed. ERROR: %d\n", ret); return 1);

    // 2. Windows of 32 tokens every 16; cumulative lengths {0, 64, 164}: an empty first batch,
    //    then 64 tokens (3 windows) and 100 tokens (5 windows; its last 4 tokens are in none).
    const int64_t headNum = 4, headDim = 32;
    const int64_t blockSize = 32, blockStride = 16;
    const std::vector<int64_t> actSeqLenOptionalHostData = {0, 64, 164};
    const int64_t seqLensSum = actSeqLenOptionalHostData.back();
    std::vector<int64_t> batchStart, outputStart, windows;
    int64_t blockNum = 0;
    for (size_t b = 0; b < actSeqLenOptionalHostData.size(); ++b) {
        const int64_t start = b == 0 ? 0 : actSeqLenOptionalHostData[b - 1];
        const int64_t len = actSeqLenOptionalHostData[b] - start;
        batchStart.push_back(start);
        outputStart.push_back(blockNum);
        windows.push_back(len >= blockSize ? (len - blockSize) / blockStride + 1 : 0);
        blockNum += windows.back();
    }
    std::vector<int64_t> outputGradShape = {blockNum, headNum, headDim};
    std::vector<int64_t> inputKVShape = {seqLensSum, headNum, headDim};
    std::vector<int64_t> weightShape = {blockSize, headNum};
    std::vector<int64_t> inputGradOutShape = {seqLensSum, headNum, headDim};
    std::vector<int64_t> weightGradOutShape = {blockSize, headNum};
    int64_t SeqLenType = 0;
    char layOut[] = "TND";

    std::mt19937 rng(20250704u);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> uniform(-0.2f, 0.2f);
    std::vector<aclFloat16> outputGradHostData(GetShapeSize(outputGradShape)), inputKVHostData(GetShapeSize(inputKVShape)),
        weightHostData(GetShapeSize(weightShape));
    for (auto& x : outputGradHostData) x = aclFloatToFloat16(normal(rng));
    for (auto& x : inputKVHostData) x = aclFloatToFloat16(normal(rng));
    for (auto& x : weightHostData) x = aclFloatToFloat16(uniform(rng));
    std::vector<aclFloat16> inputGradOutHostData(GetShapeSize(inputGradOutShape), 0xFFFF);  // NaN poison
    std::vector<aclFloat16> weightGradOutHostData(GetShapeSize(weightGradOutShape), 0xFFFF);

    aclIntArray* actSeqLenOptional =
        aclCreateIntArray(actSeqLenOptionalHostData.data(), actSeqLenOptionalHostData.size());
    CHECK_RET(actSeqLenOptional != nullptr, LOG_PRINT("aclCreateIntArray failed: %s\n", aclGetRecentErrMsg()); return 1);
    void *outputGradDeviceAddr = nullptr, *inputKVDeviceAddr = nullptr, *weightDeviceAddr = nullptr,
         *inputGradOutDeviceAddr = nullptr, *weightGradOutDeviceAddr = nullptr;
    aclTensor *outputGrad = nullptr, *inputKV = nullptr, *weight = nullptr, *inputGradOut = nullptr,
              *weightGradOut = nullptr;
    ret = CreateAclTensor(outputGradHostData, outputGradShape, &outputGradDeviceAddr, aclDataType::ACL_FLOAT16,
                          &outputGrad);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(inputKVHostData, inputKVShape, &inputKVDeviceAddr, aclDataType::ACL_FLOAT16, &inputKV);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(weightHostData, weightShape, &weightDeviceAddr, aclDataType::ACL_FLOAT16, &weight);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(inputGradOutHostData, inputGradOutShape, &inputGradOutDeviceAddr, aclDataType::ACL_FLOAT16,
                          &inputGradOut);
    CHECK_RET(ret == ACL_SUCCESS, return 1);
    ret = CreateAclTensor(weightGradOutHostData, weightGradOutShape, &weightGradOutDeviceAddr, aclDataType::ACL_FLOAT16,
                          &weightGradOut);
    CHECK_RET(ret == ACL_SUCCESS, return 1);

    // 3. The two-phase call: inputs, attributes (layout last), outputs.
    uint64_t workspaceSize = 0;
    aclOpExecutor* executor = nullptr;
    ret = aclnnNsaCompressGradGetWorkspaceSize(outputGrad, inputKV, weight, actSeqLenOptional, blockSize, blockStride,
                                               SeqLenType, layOut, inputGradOut, weightGradOut, &workspaceSize,
                                               &executor);
    CHECK_RET(ret == ACL_SUCCESS,
              LOG_PRINT("aclnnNsaCompressGradGetWorkspaceSize failed. ERROR: %d (%s)\n", ret, aclGetRecentErrMsg());
              return 1);
    void* workspaceAddr = nullptr;
    if (workspaceSize > 0) {
        ret = aclrtMalloc(&workspaceAddr, workspaceSize, ACL_MEM_MALLOC_HUGE_FIRST);
        CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("allocate workspace failed. ERROR: %d\n", ret); return 1);
    }
    ret = aclnnNsaCompressGrad(workspaceAddr, workspaceSize, executor, stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclnnNsaCompressGrad failed. ERROR: %d (%s)\n", ret, aclGetRecentErrMsg());
              return 1);

    // 4. Wait for the stream.
    ret = aclrtSynchronizeStream(stream);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("aclrtSynchronizeStream failed. ERROR: %d\n", ret); return 1);

    // 5. Both gradients, against float64.
    std::vector<aclFloat16> inputGradResult(GetShapeSize(inputGradOutShape)), weightGradResult(GetShapeSize(weightGradOutShape));
    ret = aclrtMemcpy(inputGradResult.data(), inputGradResult.size() * sizeof(aclFloat16), inputGradOutDeviceAddr,
                      inputGradResult.size() * sizeof(aclFloat16), ACL_MEMCPY_DEVICE_TO_HOST);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("copy inputGradOut from device to host failed. ERROR: %d\n", ret); return 1);
    ret = aclrtMemcpy(weightGradResult.data(), weightGradResult.size() * sizeof(aclFloat16), weightGradOutDeviceAddr,
                      weightGradResult.size() * sizeof(aclFloat16), ACL_MEMCPY_DEVICE_TO_HOST);
    CHECK_RET(ret == ACL_SUCCESS, LOG_PRINT("copy weightGradOut from device to host failed. ERROR: %d\n", ret); return 1);

    auto f16 = [](aclFloat16 x) { return static_cast<double>(aclFloat16ToFloat(x)); };
    std::vector<double> inputGradRef(inputGradResult.size(), 0.0), weightGradRef(weightGradResult.size(), 0.0);
    std::vector<char> covered(seqLensSum, 0);
    for (size_t b = 0; b < batchStart.size(); ++b)
        for (int64_t c = 0; c < windows[b]; ++c)
            for (int64_t r = 0; r < blockSize; ++r) {
                const int64_t row = batchStart[b] + c * blockStride + r;
                covered[row] = 1;
                for (int64_t h = 0; h < headNum; ++h)
                    for (int64_t e = 0; e < headDim; ++e) {
                        const double og = f16(outputGradHostData[((outputStart[b] + c) * headNum + h) * headDim + e]);
                        inputGradRef[(row * headNum + h) * headDim + e] += f16(weightHostData[r * headNum + h]) * og;
                        weightGradRef[r * headNum + h] += og * f16(inputKVHostData[(row * headNum + h) * headDim + e]);
                    }
            }
    const double inputErr = RelativeError(inputGradResult, inputGradRef);
    const double weightErr = RelativeError(weightGradResult, weightGradRef);
    int64_t uncoveredNonZero = 0;  // rows no window covers must be exact zeros
    for (int64_t row = 0; row < seqLensSum; ++row)
        if (!covered[row])
            for (int64_t i = 0; i < headNum * headDim; ++i) uncoveredNonZero += inputGradResult[row * headNum * headDim + i] != 0;
    LOG_PRINT("inputGradOut: relative Frobenius error %.3g; weightGradOut: %.3g; %lld non-zero elements in uncovered rows\n",
              inputErr, weightErr, static_cast<long long>(uncoveredNonZero));
    bool failed = !(inputErr <= 1e-3) || !(weightErr <= 1e-3) || uncoveredNonZero != 0;  // docs/spec/README.md

    // 6. Release everything.
    int cleanupErrors = 0;
    for (aclTensor* t : {outputGrad, inputKV, weight, inputGradOut, weightGradOut})
        cleanupErrors += aclDestroyTensor(t) != ACLNN_SUCCESS;
    cleanupErrors += aclDestroyIntArray(actSeqLenOptional) != ACLNN_SUCCESS;
    for (void* p : {outputGradDeviceAddr, inputKVDeviceAddr, weightDeviceAddr, inputGradOutDeviceAddr,
                    weightGradOutDeviceAddr})
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
