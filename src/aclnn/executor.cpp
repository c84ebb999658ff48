#include "aclnn/executor.hpp"

#include <cstring>
#include <mutex>
#include <span>
#include <unordered_map>

#include "aclnn/aclnn_base.h"
#include "aclnn/status.hpp"
#include "runtime/runtime.hpp"

namespace opennsa::capi {
namespace {

struct Executors {
    std::mutex mu;
    // shared_ptr: a repeatable executor that is destroyed while it runs stays alive until it ends.
    std::unordered_map<const aclOpExecutor*, std::shared_ptr<aclOpExecutor>> live;

    std::shared_ptr<aclOpExecutor> find(const aclOpExecutor* ex) {
        std::lock_guard lock(mu);
        auto it = live.find(ex);
        return it == live.end() ? nullptr : it->second;
    }
    bool erase(const aclOpExecutor* ex) {
        std::lock_guard lock(mu);
        return live.erase(ex) > 0;
    }
};

Executors& executors() {
    static Executors* e = new Executors;  // never destroyed: launches may come during teardown
    return *e;
}

constexpr const char* kNotLive =
    " is not a live executor (a launch releases it unless aclSetAclOpExecutorRepeatable was called; "
    "or it was destroyed, or never created)";

std::shared_ptr<aclOpExecutor> find_live(const aclOpExecutor* ex) {
    require(ex, "executor");
    std::shared_ptr<aclOpExecutor> held = executors().find(ex);
    if (!held) raise(ErrorCode::invalid_argument, "executor ", static_cast<const void*>(ex), kNotLive);
    return held;
}

}  // namespace

aclOpExecutor* register_executor(std::shared_ptr<aclOpExecutor> ex) {
    Executors& all = executors();
    std::lock_guard lock(all.mu);
    aclOpExecutor* handle = ex.get();
    all.live.emplace(handle, std::move(ex));
    return handle;
}

void launch(const char* launcher, void* workspace, std::uint64_t workspace_size, aclOpExecutor* executor,
            aclrtStream stream) {
    std::shared_ptr<aclOpExecutor> ex = find_live(executor);
    // A launch consumes a non-repeatable executor whatever the outcome, as in CANN: every check
    // below, and the operator's own data checks, come after it. erase() also settles a race
    // between two launches of one executor: only one of them finds it.
    if (!ex->repeatable.load() && !executors().erase(executor))
        raise(ErrorCode::invalid_argument, "executor ", static_cast<const void*>(executor), kNotLive);
    if (std::strcmp(ex->launcher, launcher) != 0)
        raise(ErrorCode::invalid_argument, "executor was created by ", ex->made_by, " and must be launched by ",
              ex->launcher, ", not ", launcher);
    std::shared_ptr<Stream> s = find_stream(stream);
    if (!s) raise(ErrorCode::invalid_argument, "stream ", stream, " is not a live stream");
    if (workspace_size < ex->workspace_bytes)
        raise(ErrorCode::invalid_argument, "workspaceSize = ", workspace_size, " is smaller than the ",
              ex->workspace_bytes, " bytes ", ex->made_by, " asked for");
    if (ex->workspace_bytes > 0 && workspace == nullptr)
        raise(ErrorCode::null_pointer, "workspace is a null pointer but ", ex->workspace_bytes, " bytes are needed");
    if (ex->workspace_bytes > 0 && reinterpret_cast<std::uintptr_t>(workspace) % 64 != 0)
        raise(ErrorCode::invalid_argument, "workspace = ", workspace,
              " is not 64-byte aligned (memory from aclrtMalloc is)");

    const std::span<std::byte> ws(static_cast<std::byte*>(workspace), ex->workspace_bytes);
    std::lock_guard in_order(s->running);
    ex->run(ws);
}

}  // namespace opennsa::capi

using namespace opennsa::capi;

extern "C" {

aclnnStatus aclSetAclOpExecutorRepeatable(aclOpExecutor* executor) {
    return aclnn_call("aclSetAclOpExecutorRepeatable", [&] { find_live(executor)->repeatable.store(true); });
}

aclnnStatus aclDestroyAclOpExecutor(aclOpExecutor* executor) {
    return aclnn_call("aclDestroyAclOpExecutor", [&] {
        require(executor, "executor");
        if (!executors().erase(executor))
            raise(opennsa::ErrorCode::invalid_argument, "executor ", static_cast<const void*>(executor), kNotLive);
    });
}

}  // extern "C"
