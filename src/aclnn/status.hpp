// aclnn status plumbing: native errors become aclnnStatus codes plus the thread's last message.
#pragma once

#include <string>

#include "aclnn/acl_meta.h"
#include "opennsa/core.hpp"
#include "runtime/last_error.hpp"

namespace opennsa::capi {

// Throws the native error type: the C layer's own checks report through the same mapping.
template <class... Parts>
[[noreturn]] void raise(ErrorCode code, const Parts&... parts) {
    throw Error(code, cat(parts...));
}

inline aclnnStatus to_status(ErrorCode code) noexcept {
    switch (code) {
        case ErrorCode::null_pointer: return ACLNN_ERR_PARAM_NULLPTR;
        case ErrorCode::invalid_argument: return ACLNN_ERR_PARAM_INVALID;
        case ErrorCode::internal: break;
    }
    return ACLNN_ERR_INNER;
}

// Inside a catch block: records the exception in flight as fn's error and returns its status.
inline aclnnStatus status_of_current_exception(const char* fn) noexcept {
    try {
        throw;
    } catch (const Error& e) {
        set_last_error(fn, e.what());
        return to_status(e.code());
    } catch (const std::bad_alloc&) {
        set_last_error(fn, "out of host memory");
    } catch (const std::exception& e) {
        set_last_error(fn, cat("internal error: ", e.what()));
    } catch (...) {
        set_last_error(fn, "internal error: unknown exception");
    }
    return ACLNN_ERR_INNER;
}

// Runs an aclnn body that returns normally on success; every exception becomes a status code and a
// message naming fn.
template <class Body>
aclnnStatus aclnn_call(const char* fn, Body&& body) noexcept {
    try {
        body();
        return ACLNN_SUCCESS;
    } catch (...) {
        return status_of_current_exception(fn);
    }
}

// A required out-pointer argument.
inline void require(const void* p, const char* name) {
    if (p == nullptr) raise(ErrorCode::null_pointer, name, " is a null pointer");
}

}  // namespace opennsa::capi
