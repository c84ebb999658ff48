// The aclnn meta objects behind the opaque C handles. They describe caller memory; none owns it.
#pragma once

#include <cstdint>
#include <vector>

#include "aclnn/acl_meta.h"

struct aclTensor {
    std::vector<std::int64_t> view_dims;
    std::vector<std::int64_t> strides;  // elements, one per view dimension
    std::int64_t offset = 0;            // elements from data to the view's first element
    aclDataType dtype = ACL_DT_UNDEFINED;
    aclFormat format = ACL_FORMAT_ND;
    std::vector<std::int64_t> storage_dims;  // the buffer's shape; empty when not given
    void* data = nullptr;
};

struct aclIntArray {
    std::vector<std::int64_t> values;
};

struct aclFloatArray {
    std::vector<float> values;
};

struct aclBoolArray {
    std::vector<unsigned char> values;  // not vector<bool>: one byte per element, like bool[]
};

struct aclScalar {
    aclDataType dtype = ACL_DT_UNDEFINED;
    unsigned char bytes[16] = {};  // the widest type (ACL_COMPLEX128)
};
