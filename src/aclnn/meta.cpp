// aclCreate* / aclDestroy* / aclGet*: plain records of the caller's arguments. Creation checks only
// that the arrays it copies exist; what a tensor may be is decided when an operator receives it.
#include <algorithm>
#include <cstring>
#include <memory>

#include "aclnn/aclnn_base.h"
#include "aclnn/meta.hpp"
#include "aclnn/status.hpp"
#include "runtime/raw_enum.hpp"
#include "runtime/runtime.hpp"

namespace opennsa::capi {
namespace {

constexpr std::uint64_t kMaxDims = 8;  // CANN's limit on tensor dimensions

// Runs a creation body; on any failure records the message and returns nullptr.
template <class Body>
auto create_call(const char* fn, Body&& body) noexcept -> decltype(body()) {
    try {
        return body();
    } catch (...) {
        status_of_current_exception(fn);
    }
    return nullptr;
}

// Copies count elements from p (which may be null only when count is 0).
template <class T>
std::vector<T> copy_array(const T* p, std::uint64_t count, const char* name, std::uint64_t limit) {
    if (count > limit) raise(ErrorCode::invalid_argument, name, ": ", count, " elements, more than ", limit);
    if (count > 0 && p == nullptr) raise(ErrorCode::null_pointer, name, " is a null pointer but its size is ", count);
    return count ? std::vector<T>(p, p + count) : std::vector<T>{};
}

constexpr std::uint64_t kNoLimit = ~std::uint64_t{0};

// Hands a tensor's dims out as a new[] array (the caller delete[]s it).
aclnnStatus dims_out(const char* fn, const aclTensor* tensor, std::vector<std::int64_t> aclTensor::*field,
                     std::int64_t** values, const char* values_name, std::uint64_t* count, const char* count_name) {
    return aclnn_call(fn, [&] {
        require(tensor, "tensor");
        require(values, values_name);
        require(count, count_name);
        const std::vector<std::int64_t>& dims = tensor->*field;
        auto* out = new std::int64_t[dims.size()];
        std::copy(dims.begin(), dims.end(), out);
        *values = out;
        *count = dims.size();
    });
}

// Null is accepted (as free(NULL)): destroying "nothing" in cleanup paths is common.
template <class T>
aclnnStatus destroy(const T* object) noexcept {
    delete object;
    return ACLNN_SUCCESS;
}

}  // namespace
}  // namespace opennsa::capi

using namespace opennsa::capi;
using opennsa::ErrorCode;

extern "C" {

aclTensor* aclCreateTensor(const int64_t* viewDims, uint64_t viewDimsNum, aclDataType dataType, const int64_t* stride,
                           int64_t offset, aclFormat format, const int64_t* storageDims, uint64_t storageDimsNum,
                           void* tensorData) {
    return create_call("aclCreateTensor", [&] {
        auto t = std::make_unique<aclTensor>();
        t->view_dims = copy_array(viewDims, viewDimsNum, "viewDims", kMaxDims);
        if (stride != nullptr) {
            t->strides.assign(stride, stride + viewDimsNum);
        } else {
            // No strides: a dense row-major view.
            t->strides.assign(viewDimsNum, 1);
            for (std::uint64_t d = viewDimsNum; d-- > 1;)
                if (__builtin_mul_overflow(t->strides[d], std::max<std::int64_t>(t->view_dims[d], 1), &t->strides[d - 1]))
                    raise(ErrorCode::invalid_argument, "viewDims: the dense strides of this shape overflow int64");
        }
        t->offset = offset;
        copy_enum(t->dtype, dataType);
        copy_enum(t->format, format);
        t->storage_dims = copy_array(storageDims, storageDimsNum, "storageDims", kMaxDims);
        t->data = tensorData;
        return t.release();
    });
}

aclScalar* aclCreateScalar(void* value, aclDataType dataType) {
    return create_call("aclCreateScalar", [&] {
        const std::size_t size = acl_dtype_size(raw_enum(dataType));
        if (size == 0 || size > sizeof(aclScalar::bytes))
            raise(ErrorCode::invalid_argument, "dataType = ", raw_enum(dataType), " has no fixed element size");
        require(value, "value");
        auto s = new aclScalar;
        copy_enum(s->dtype, dataType);
        std::memcpy(s->bytes, value, size);
        return s;
    });
}

aclIntArray* aclCreateIntArray(const int64_t* value, uint64_t size) {
    return create_call("aclCreateIntArray",
                       [&] { return new aclIntArray{copy_array(value, size, "value", kNoLimit)}; });
}

aclFloatArray* aclCreateFloatArray(const float* value, uint64_t size) {
    return create_call("aclCreateFloatArray",
                       [&] { return new aclFloatArray{copy_array(value, size, "value", kNoLimit)}; });
}

aclBoolArray* aclCreateBoolArray(const bool* value, uint64_t size) {
    return create_call("aclCreateBoolArray", [&] {
        auto a = std::make_unique<aclBoolArray>();
        for (bool b : copy_array(value, size, "value", kNoLimit)) a->values.push_back(b ? 1 : 0);
        return a.release();
    });
}

aclnnStatus aclDestroyTensor(const aclTensor* tensor) { return destroy(tensor); }
aclnnStatus aclDestroyScalar(const aclScalar* scalar) { return destroy(scalar); }
aclnnStatus aclDestroyIntArray(const aclIntArray* array) { return destroy(array); }
aclnnStatus aclDestroyFloatArray(const aclFloatArray* array) { return destroy(array); }
aclnnStatus aclDestroyBoolArray(const aclBoolArray* array) { return destroy(array); }

aclnnStatus aclGetViewShape(const aclTensor* tensor, int64_t** viewDims, uint64_t* viewDimsNum) {
    return dims_out("aclGetViewShape", tensor, &aclTensor::view_dims, viewDims, "viewDims", viewDimsNum,
                    "viewDimsNum");
}

aclnnStatus aclGetViewStrides(const aclTensor* tensor, int64_t** stridesValue, uint64_t* stridesNum) {
    return dims_out("aclGetViewStrides", tensor, &aclTensor::strides, stridesValue, "stridesValue", stridesNum,
                    "stridesNum");
}

aclnnStatus aclGetStorageShape(const aclTensor* tensor, int64_t** storageDims, uint64_t* storageDimsNum) {
    return dims_out("aclGetStorageShape", tensor, &aclTensor::storage_dims, storageDims, "storageDims",
                    storageDimsNum, "storageDimsNum");
}

aclnnStatus aclGetViewOffset(const aclTensor* tensor, int64_t* offset) {
    return aclnn_call("aclGetViewOffset", [&] {
        require(tensor, "tensor");
        require(offset, "offset");
        *offset = tensor->offset;
    });
}

aclnnStatus aclGetDataType(const aclTensor* tensor, aclDataType* dataType) {
    return aclnn_call("aclGetDataType", [&] {
        require(tensor, "tensor");
        require(dataType, "dataType");
        copy_enum(*dataType, tensor->dtype);
    });
}

aclnnStatus aclGetFormat(const aclTensor* tensor, aclFormat* format) {
    return aclnn_call("aclGetFormat", [&] {
        require(tensor, "tensor");
        require(format, "format");
        copy_enum(*format, tensor->format);
    });
}

aclnnStatus aclGetIntArraySize(const aclIntArray* array, uint64_t* size) {
    return aclnn_call("aclGetIntArraySize", [&] {
        require(array, "array");
        require(size, "size");
        *size = array->values.size();
    });
}

aclnnStatus aclnnInit(const char* /*configPath: no options exist*/) { return ACLNN_SUCCESS; }
aclnnStatus aclnnFinalize(void) { return ACLNN_SUCCESS; }

}  // extern "C"
