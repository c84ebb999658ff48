// Contexts (aclrtCreateContext, ...). With one host device a context carries no resources: it is a
// handle, and the calling thread's current context is all the state there is. Programs written for
// CANN create one, make it current and destroy it; this gives them CANN's observable behaviour.
#include <cstdint>
#include <mutex>
#include <unordered_set>

#include "acl/acl.h"
#include "runtime/last_error.hpp"
#include "runtime/runtime.hpp"

namespace opennsa::capi {
namespace {

// Handles are tokens, never addresses, and a token is never handed out twice: a destroyed context
// stays detectably destroyed (a freed address could come back as a later context's handle).
using Token = std::uintptr_t;
constexpr Token kNoContext = 0;
constexpr Token kDefaultContext = 0xC0A7E000;  // the device's default context (aclrtSetDevice)
constexpr Token kTokenStep = 16;

struct Contexts {
    std::mutex mu;
    std::unordered_set<Token> live;  // explicit contexts, created and not yet destroyed
    Token next = kDefaultContext + kTokenStep;
};

Contexts& contexts() {
    static Contexts* c = new Contexts;  // never destroyed: handles may be used during static teardown
    return *c;
}

// Per thread, as in CANN.
thread_local Token t_current = kNoContext;

Token token_of(aclrtContext context) { return reinterpret_cast<Token>(context); }
aclrtContext handle_of(Token token) { return reinterpret_cast<aclrtContext>(token); }

bool is_live_explicit(Token token) {
    Contexts& all = contexts();
    std::lock_guard lock(all.mu);
    return all.live.count(token) > 0;
}

// Whether `token` can be current right now: a live explicit context, or the default context while
// the device is set.
bool usable(Token token) {
    if (token == kNoContext) return false;
    if (token == kDefaultContext) return device_open();
    return is_live_explicit(token);
}

}  // namespace

void adopt_default_context() noexcept {
    try {
        if (!usable(t_current)) t_current = kDefaultContext;
    } catch (...) {
        // usable() only locks a mutex; should that ever throw, the thread keeps its old binding.
    }
}

}  // namespace opennsa::capi

using namespace opennsa::capi;

extern "C" {

aclError aclrtCreateContext(aclrtContext* context, int32_t deviceId) {
    const char* fn = "aclrtCreateContext";
    return acl_call(fn, [&] {
        if (context == nullptr) return fail(fn, ACL_ERROR_INVALID_PARAM, "context is a null pointer");
        if (deviceId != 0)
            return fail(fn, ACL_ERROR_INVALID_PARAM,
                        cat("deviceId = ", deviceId, " does not exist (OpenNSA has one device, id 0)"));
        if (!runtime_initialized()) return fail(fn, ACL_ERROR_UNINITIALIZE, "call aclInit first");
        Token token = kNoContext;
        {
            Contexts& all = contexts();
            std::lock_guard lock(all.mu);
            token = all.next;
            all.live.insert(token);  // may throw bad_alloc: then nothing was handed out
            all.next += kTokenStep;
        }
        t_current = token;  // CANN: the new context becomes the calling thread's context
        *context = handle_of(token);
        return ACL_SUCCESS;
    });
}

aclError aclrtDestroyContext(aclrtContext context) {
    const char* fn = "aclrtDestroyContext";
    return acl_call(fn, [&] {
        const Token token = token_of(context);
        if (token == kNoContext) return fail(fn, ACL_ERROR_INVALID_PARAM, "context is a null pointer");
        if (token == kDefaultContext)
            return fail(fn, ACL_ERROR_INVALID_PARAM,
                        cat("context ", context,
                            " is the device's default context, made by aclrtSetDevice: it cannot be destroyed "
                            "(aclrtResetDevice releases it)"));
        {
            Contexts& all = contexts();
            std::lock_guard lock(all.mu);
            if (all.live.erase(token) == 0)
                return fail(fn, ACL_ERROR_INVALID_PARAM,
                            cat("context ", context,
                                " is not a live context: it was not returned by aclrtCreateContext or was already "
                                "destroyed"));
        }
        // Other threads holding it notice on their next use (usable() is false from now on).
        if (t_current == token) t_current = kNoContext;
        return ACL_SUCCESS;
    });
}

aclError aclrtSetCurrentContext(aclrtContext context) {
    const char* fn = "aclrtSetCurrentContext";
    return acl_call(fn, [&] {
        const Token token = token_of(context);
        if (token == kNoContext) return fail(fn, ACL_ERROR_INVALID_PARAM, "context is a null pointer");
        if (token == kDefaultContext) {
            if (!device_open())
                return fail(fn, ACL_ERROR_INVALID_PARAM,
                            cat("context ", context,
                                " is the device's default context, which exists only while the device is set "
                                "(aclrtSetDevice(0) not called, or reset since)"));
        } else if (!is_live_explicit(token)) {
            return fail(fn, ACL_ERROR_INVALID_PARAM,
                        cat("context ", context,
                            " is not a live context: it was not returned by aclrtCreateContext or was already "
                            "destroyed"));
        }
        t_current = token;
        return ACL_SUCCESS;
    });
}

aclError aclrtGetCurrentContext(aclrtContext* context) {
    const char* fn = "aclrtGetCurrentContext";
    return acl_call(fn, [&] {
        if (context == nullptr) return fail(fn, ACL_ERROR_INVALID_PARAM, "context is a null pointer");
        if (!usable(t_current)) {
            const bool had_one = t_current != kNoContext;
            t_current = kNoContext;
            return fail(fn, ACL_ERROR_RT_CONTEXT_NULL,
                        had_one ? "the calling thread's context was destroyed (or its device reset) and no other "
                                  "was made current"
                                : "the calling thread has no current context: call aclrtSetDevice, "
                                  "aclrtCreateContext or aclrtSetCurrentContext first");
        }
        *context = handle_of(t_current);
        return ACL_SUCCESS;
    });
}

}  // extern "C"
