// "Device" and host memory: page-aligned host allocations, tracked so that freeing a pointer
// this library did not hand out is an error rather than a crash. Copies and sets check destMax.
#include <cstring>
#include <new>
#include <unordered_map>

#include "acl/acl.h"
#include "runtime/last_error.hpp"
#include "runtime/raw_enum.hpp"
#include "runtime/runtime.hpp"

namespace opennsa::capi {
namespace {

// Page-aligned, like the library's own workspaces (the same page offsets on every call) and like
// real device allocations, which are coarsely aligned too.
constexpr std::align_val_t kAlignment{4096};

enum class Kind { device, host };

struct Allocations {
    std::mutex mu;
    std::unordered_map<void*, Kind> live;
};

Allocations& allocations() {
    static Allocations* a = new Allocations;  // never destroyed: frees may come during teardown
    return *a;
}

const char* kind_name(Kind k) { return k == Kind::device ? "aclrtMalloc" : "aclrtMallocHost"; }

aclError allocate(const char* fn, const char* ptr_name, void** out, size_t size, Kind kind) {
    if (out == nullptr) return fail(fn, ACL_ERROR_INVALID_PARAM, cat(ptr_name, " is a null pointer"));
    if (size == 0) return fail(fn, ACL_ERROR_INVALID_PARAM, "size = 0: an allocation must be at least 1 byte");
    void* p = ::operator new(size, kAlignment, std::nothrow);
    if (p == nullptr) return fail(fn, ACL_ERROR_BAD_ALLOC, cat("size = ", size, " bytes: out of memory"));
    try {
        Allocations& a = allocations();
        std::lock_guard lock(a.mu);
        a.live.emplace(p, kind);
    } catch (...) {
        ::operator delete(p, kAlignment);
        throw;
    }
    *out = p;
    return ACL_SUCCESS;
}

aclError release(const char* fn, const char* ptr_name, void* p, Kind kind) {
    if (p == nullptr) return fail(fn, ACL_ERROR_INVALID_PARAM, cat(ptr_name, " is a null pointer"));
    Allocations& a = allocations();
    {
        std::lock_guard lock(a.mu);
        auto it = a.live.find(p);
        if (it == a.live.end())
            return fail(fn, ACL_ERROR_INVALID_PARAM,
                        cat(ptr_name, " = ", p, " was not returned by ", kind_name(kind), " or was already freed"));
        if (it->second != kind)
            return fail(fn, ACL_ERROR_INVALID_PARAM,
                        cat(ptr_name, " = ", p, " came from ", kind_name(it->second), ", not ", kind_name(kind)));
        a.live.erase(it);
    }
    ::operator delete(p, kAlignment);
    return ACL_SUCCESS;
}

// kind by reference: it is read by its bytes (raw_enum), never loaded as an enum.
aclError copy(const char* fn, void* dst, size_t destMax, const void* src, size_t count, const aclrtMemcpyKind& kind) {
    if (dst == nullptr) return fail(fn, ACL_ERROR_INVALID_PARAM, "dst is a null pointer");
    if (src == nullptr) return fail(fn, ACL_ERROR_INVALID_PARAM, "src is a null pointer");
    if (count > destMax)
        return fail(fn, ACL_ERROR_INVALID_PARAM, cat("count = ", count, " bytes exceeds destMax = ", destMax));
    if (const long long k = raw_enum(kind); k < ACL_MEMCPY_HOST_TO_HOST || k > ACL_MEMCPY_DEFAULT)
        return fail(fn, ACL_ERROR_INVALID_PARAM, cat("kind = ", k, " is not an aclrtMemcpyKind (0 to 4)"));
    // Every kind is a host copy here; memmove also makes overlapping ranges well defined.
    if (count > 0) std::memmove(dst, src, count);
    return ACL_SUCCESS;
}

aclError set(const char* fn, void* devPtr, size_t maxCount, int32_t value, size_t count) {
    if (devPtr == nullptr) return fail(fn, ACL_ERROR_INVALID_PARAM, "devPtr is a null pointer");
    if (count > maxCount)
        return fail(fn, ACL_ERROR_INVALID_PARAM, cat("count = ", count, " bytes exceeds maxCount = ", maxCount));
    if (count > 0) std::memset(devPtr, static_cast<unsigned char>(value), count);
    return ACL_SUCCESS;
}

// Runs op in stream order: after the work already on the stream, before later work.
template <class Op>
aclError on_stream(const char* fn, aclrtStream stream, Op&& op) {
    std::shared_ptr<Stream> s = find_stream(stream);
    if (!s) return fail(fn, ACL_ERROR_INVALID_PARAM, cat("stream ", stream, " is not a live stream"));
    std::lock_guard lock(s->running);
    return op();
}

}  // namespace
}  // namespace opennsa::capi

using namespace opennsa::capi;

extern "C" {

aclError aclrtMalloc(void** devPtr, size_t size, aclrtMemMallocPolicy policy) {
    return acl_call("aclrtMalloc", [&] {
        if (const long long p = raw_enum(policy); p < ACL_MEM_MALLOC_HUGE_FIRST || p > ACL_MEM_MALLOC_NORMAL_ONLY)
            return fail("aclrtMalloc", ACL_ERROR_INVALID_PARAM,
                        cat("policy = ", p, " is not an aclrtMemMallocPolicy (0 to 2)"));
        return allocate("aclrtMalloc", "devPtr", devPtr, size, Kind::device);
    });
}

aclError aclrtFree(void* devPtr) {
    return acl_call("aclrtFree", [&] { return release("aclrtFree", "devPtr", devPtr, Kind::device); });
}

aclError aclrtMallocHost(void** hostPtr, size_t size) {
    return acl_call("aclrtMallocHost", [&] { return allocate("aclrtMallocHost", "hostPtr", hostPtr, size, Kind::host); });
}

aclError aclrtFreeHost(void* hostPtr) {
    return acl_call("aclrtFreeHost", [&] { return release("aclrtFreeHost", "hostPtr", hostPtr, Kind::host); });
}

aclError aclrtMemcpy(void* dst, size_t destMax, const void* src, size_t count, aclrtMemcpyKind kind) {
    return acl_call("aclrtMemcpy", [&] { return copy("aclrtMemcpy", dst, destMax, src, count, kind); });
}

aclError aclrtMemset(void* devPtr, size_t maxCount, int32_t value, size_t count) {
    return acl_call("aclrtMemset", [&] { return set("aclrtMemset", devPtr, maxCount, value, count); });
}

aclError aclrtMemcpyAsync(void* dst, size_t destMax, const void* src, size_t count, aclrtMemcpyKind kind,
                          aclrtStream stream) {
    const char* fn = "aclrtMemcpyAsync";
    return acl_call(fn, [&] {
        return on_stream(fn, stream, [&] { return copy(fn, dst, destMax, src, count, kind); });
    });
}

aclError aclrtMemsetAsync(void* devPtr, size_t maxCount, int32_t value, size_t count, aclrtStream stream) {
    const char* fn = "aclrtMemsetAsync";
    return acl_call(fn, [&] { return on_stream(fn, stream, [&] { return set(fn, devPtr, maxCount, value, count); }); });
}

}  // extern "C"
