// Helpers shared by the examples: status checks, 16-bit float encodings and a "device" buffer.
// Written against the CANN headers only, so the examples build with -I/-L/-lopennsa alone.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "acl/acl.h"
#include "aclnn/acl_meta.h"

// Stops the example with the library's message when a call fails.
#define CHECK_ACL(call)                                                                                   \
    do {                                                                                                  \
        const long long status_ = static_cast<long long>(call);                                           \
        if (status_ != 0) {                                                                               \
            std::fprintf(stderr, "%s:%d: %s returned %lld: %s\n", __FILE__, __LINE__, #call, status_,     \
                         aclGetRecentErrMsg());                                                           \
            std::exit(2);                                                                                 \
        }                                                                                                 \
    } while (0)

namespace example {

// bf16 is the top half of an fp32; rounding to nearest even on the dropped half.
inline std::uint16_t float_to_bf16(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    if (std::isnan(f)) return static_cast<std::uint16_t>((u >> 16) | 0x40);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return static_cast<std::uint16_t>(u >> 16);
}

inline float bf16_to_float(std::uint16_t h) {
    const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// A 16-bit float dtype (ACL_FLOAT16 or ACL_BF16) as encode / decode functions.
struct Half {
    aclDataType dtype;
    std::uint16_t encode(float f) const { return dtype == ACL_BF16 ? float_to_bf16(f) : aclFloatToFloat16(f); }
    float decode(std::uint16_t h) const { return dtype == ACL_BF16 ? bf16_to_float(h) : aclFloat16ToFloat(h); }
};

// One "device" buffer holding a dense [d0, d1, d2] tensor, and its aclTensor.
struct DeviceTensor {
    void* data = nullptr;
    std::size_t bytes = 0;
    aclTensor* tensor = nullptr;

    DeviceTensor(std::vector<std::int64_t> dims, aclDataType dtype) {
        std::int64_t count = 1;
        for (std::int64_t d : dims) count *= d;
        bytes = static_cast<std::size_t>(count) * aclDataTypeSize(dtype);
        // aclrtMalloc rejects size 0 (as CANN does); an empty tensor still gets a valid pointer.
        CHECK_ACL(aclrtMalloc(&data, bytes > 0 ? bytes : 1, ACL_MEM_MALLOC_HUGE_FIRST));
        std::vector<std::int64_t> strides(dims.size(), 1);
        for (std::size_t i = dims.size() - 1; i > 0; --i) strides[i - 1] = strides[i] * dims[i];
        tensor = aclCreateTensor(dims.data(), dims.size(), dtype, strides.data(), 0, ACL_FORMAT_ND, dims.data(),
                                 dims.size(), data);
        if (tensor == nullptr) CHECK_ACL(ACLNN_ERR_INNER);
    }
    DeviceTensor(const DeviceTensor&) = delete;
    DeviceTensor& operator=(const DeviceTensor&) = delete;
    ~DeviceTensor() {
        aclDestroyTensor(tensor);
        aclrtFree(data);
    }

    template <class T>
    void upload(const std::vector<T>& host) {
        CHECK_ACL(aclrtMemcpy(data, bytes, host.data(), host.size() * sizeof(T), ACL_MEMCPY_HOST_TO_DEVICE));
    }
    template <class T>
    std::vector<T> download() const {
        std::vector<T> host(bytes / sizeof(T));
        CHECK_ACL(aclrtMemcpy(host.data(), host.size() * sizeof(T), data, bytes, ACL_MEMCPY_DEVICE_TO_HOST));
        return host;
    }
};

}  // namespace example
