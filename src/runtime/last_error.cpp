#include "runtime/last_error.hpp"

#include "acl/acl.h"

namespace opennsa::capi {
namespace {
// Per thread, so concurrent callers on different streams each read their own failure.
thread_local std::string t_last_error;
}  // namespace

void set_last_error(const char* fn, const std::string& message) noexcept {
    try {
        t_last_error.assign(fn).append(": ").append(message);
        // One line: a message is meant for a log line; embedded newlines would split it.
        for (char& c : t_last_error)
            if (c == '\n' || c == '\r') c = ' ';
    } catch (...) {
        t_last_error = "out of memory";  // fits the small-string buffer: cannot throw
    }
}

}  // namespace opennsa::capi

extern "C" const char* aclGetRecentErrMsg(void) { return opennsa::capi::t_last_error.c_str(); }
