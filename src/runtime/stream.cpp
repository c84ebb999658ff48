// Streams, devices and process setup (aclInit / aclFinalize).
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "acl/acl.h"
#include "runtime/last_error.hpp"
#include "runtime/runtime.hpp"

namespace opennsa::capi {
namespace {

struct Streams {
    std::mutex mu;
    std::unordered_map<void*, std::shared_ptr<Stream>> live;
    std::shared_ptr<Stream> default_stream = std::make_shared<Stream>();
};

Streams& streams() {
    static Streams* s = new Streams;  // never destroyed: streams may be used during static teardown
    return *s;
}

struct Process {
    std::mutex mu;
    std::uint64_t init_count = 0;    // aclInit calls since the last full finalize
    std::uint64_t device_count = 0;  // aclrtSetDevice(0) calls not yet reset
};

Process& process() {
    static Process p;
    return p;
}

aclError check_device(const char* fn, std::int32_t id) {
    if (id == 0) return ACL_SUCCESS;
    return fail(fn, ACL_ERROR_INVALID_PARAM,
                cat("deviceId = ", id, " does not exist (OpenNSA has one device, id 0)"));
}

}  // namespace

bool runtime_initialized() {
    Process& p = process();
    std::lock_guard lock(p.mu);
    return p.init_count > 0;
}

bool device_open() {
    Process& p = process();
    std::lock_guard lock(p.mu);
    return p.device_count > 0;
}

std::shared_ptr<Stream> find_stream(aclrtStream handle) {
    Streams& s = streams();
    if (handle == nullptr) return s.default_stream;
    std::lock_guard lock(s.mu);
    auto it = s.live.find(handle);
    return it == s.live.end() ? nullptr : it->second;
}

}  // namespace opennsa::capi

using namespace opennsa::capi;

extern "C" {

aclError aclInit(const char* /*configPath: no options exist*/) {
    return acl_call("aclInit", [] {
        Process& p = process();
        std::lock_guard lock(p.mu);
        // CANN counts repeated calls and reports them; the first call is the one that succeeds.
        if (p.init_count++ > 0)
            return fail("aclInit", ACL_ERROR_REPEAT_INITIALIZE, "aclInit was already called in this process");
        return ACL_SUCCESS;
    });
}

aclError aclFinalize(void) {
    return acl_call("aclFinalize", [] {
        Process& p = process();
        std::lock_guard lock(p.mu);
        if (p.init_count == 0)
            return fail("aclFinalize", ACL_ERROR_REPEAT_FINALIZE, "aclInit was not called, or aclFinalize already ran");
        p.init_count = 0;
        p.device_count = 0;
        return ACL_SUCCESS;
    });
}

aclError aclFinalizeReference(uint64_t* refCount) {
    return acl_call("aclFinalizeReference", [&] {
        Process& p = process();
        std::lock_guard lock(p.mu);
        if (p.init_count == 0)
            return fail("aclFinalizeReference", ACL_ERROR_REPEAT_FINALIZE,
                        "aclInit was not called, or finalization already ran");
        if (--p.init_count == 0) p.device_count = 0;
        if (refCount) *refCount = p.init_count;
        return ACL_SUCCESS;
    });
}

aclError aclrtSetDevice(int32_t deviceId) {
    return acl_call("aclrtSetDevice", [&] {
        if (aclError e = check_device("aclrtSetDevice", deviceId)) return e;
        if (!runtime_initialized()) return fail("aclrtSetDevice", ACL_ERROR_UNINITIALIZE, "call aclInit first");
        {
            Process& p = process();
            std::lock_guard lock(p.mu);
            ++p.device_count;
        }
        adopt_default_context();  // as CANN: the thread now runs in the device's default context
        return ACL_SUCCESS;
    });
}

aclError aclrtResetDevice(int32_t deviceId) {
    return acl_call("aclrtResetDevice", [&] {
        if (aclError e = check_device("aclrtResetDevice", deviceId)) return e;
        Process& p = process();
        std::lock_guard lock(p.mu);
        if (p.device_count > 0) --p.device_count;
        return ACL_SUCCESS;
    });
}

aclError aclrtGetDevice(int32_t* deviceId) {
    if (deviceId == nullptr) return fail("aclrtGetDevice", ACL_ERROR_INVALID_PARAM, "deviceId is a null pointer");
    *deviceId = 0;
    return ACL_SUCCESS;
}

aclError aclrtGetDeviceCount(uint32_t* count) {
    if (count == nullptr) return fail("aclrtGetDeviceCount", ACL_ERROR_INVALID_PARAM, "count is a null pointer");
    *count = 1;
    return ACL_SUCCESS;
}

aclError aclrtCreateStream(aclrtStream* stream) {
    return acl_call("aclrtCreateStream", [&] {
        if (stream == nullptr) return fail("aclrtCreateStream", ACL_ERROR_INVALID_PARAM, "stream is a null pointer");
        if (!runtime_initialized()) return fail("aclrtCreateStream", ACL_ERROR_UNINITIALIZE, "call aclInit first");
        auto s = std::make_shared<Stream>();
        Streams& all = streams();
        std::lock_guard lock(all.mu);
        all.live.emplace(s.get(), s);
        *stream = s.get();
        return ACL_SUCCESS;
    });
}

aclError aclrtDestroyStream(aclrtStream stream) {
    return acl_call("aclrtDestroyStream", [&] {
        Streams& all = streams();
        std::shared_ptr<Stream> s;
        {
            std::lock_guard lock(all.mu);
            auto it = stream ? all.live.find(stream) : all.live.end();
            if (it == all.live.end())
                return fail("aclrtDestroyStream", ACL_ERROR_INVALID_PARAM,
                            cat("stream ", stream, " is not a live stream created by aclrtCreateStream"));
            s = std::move(it->second);
            all.live.erase(it);
        }
        std::lock_guard wait(s->running);  // as CANN: destroying waits for the stream's work
        return ACL_SUCCESS;
    });
}

aclError aclrtSynchronizeStream(aclrtStream stream) {
    return acl_call("aclrtSynchronizeStream", [&] {
        std::shared_ptr<Stream> s = find_stream(stream);
        if (!s)
            return fail("aclrtSynchronizeStream", ACL_ERROR_INVALID_PARAM,
                        cat("stream ", stream, " is not a live stream"));
        std::lock_guard wait(s->running);
        return ACL_SUCCESS;
    });
}

aclError aclrtSynchronizeDevice(void) {
    return acl_call("aclrtSynchronizeDevice", [] {
        Streams& all = streams();
        std::vector<std::shared_ptr<Stream>> each{all.default_stream};
        {
            std::lock_guard lock(all.mu);
            for (auto& [handle, s] : all.live) each.push_back(s);
        }
        for (auto& s : each) std::lock_guard wait(s->running);
        return ACL_SUCCESS;
    });
}

}  // extern "C"
