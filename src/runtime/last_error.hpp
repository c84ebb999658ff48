// The C layer's error plumbing: the calling thread's last error message (aclGetRecentErrMsg) and
// wrappers that keep every exception inside the C entry points.
#pragma once

#include <exception>
#include <new>
#include <sstream>
#include <string>

#include "acl/acl_base.h"

namespace opennsa::capi {

// One line built from any streamable parts.
template <class... Parts>
std::string cat(const Parts&... parts) {
    std::ostringstream s;
    (s << ... << parts);
    return s.str();
}

// Records "fn: message" as this thread's last error. Never throws (an allocation failure keeps a
// fixed text instead).
void set_last_error(const char* fn, const std::string& message) noexcept;

// Records the message and returns code: `return fail(fn, ACL_ERROR_INVALID_PARAM, ...)`.
inline int fail(const char* fn, int code, const std::string& message) noexcept {
    set_last_error(fn, message);
    return code;
}

// Runs an aclrt* body returning aclError; an escaping exception becomes ACL_ERROR_BAD_ALLOC (out of
// memory) or ACL_ERROR_INTERNAL_ERROR, with its message recorded.
template <class Body>
aclError acl_call(const char* fn, Body&& body) noexcept {
    try {
        return body();
    } catch (const std::bad_alloc&) {
        return fail(fn, ACL_ERROR_BAD_ALLOC, "out of host memory");
    } catch (const std::exception& e) {
        return fail(fn, ACL_ERROR_INTERNAL_ERROR, cat("internal error: ", e.what()));
    } catch (...) {
        return fail(fn, ACL_ERROR_INTERNAL_ERROR, "internal error: unknown exception");
    }
}

}  // namespace opennsa::capi
