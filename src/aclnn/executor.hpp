// Executors: one validated operator call, waiting for its launch. An executor holds what to run
// (a callable over the workspace, with the converted arguments captured), the entry point that
// may launch it and the workspace size its phase one reported. The library tracks the live ones,
// so a launch of a consumed or destroyed executor is an error and never a dangling access.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "acl/acl_rt.h"
#include "aclnn/acl_meta.h"
#include "aclnn/status.hpp"

struct aclOpExecutor {
    const char* launcher = "";   // the phase-two entry point, e.g. "aclnnNsaSelectedAttention"
    const char* made_by = "";    // the phase-one entry point that made it
    std::function<void(std::span<std::byte>)> run;
    std::uint64_t workspace_bytes = 0;    // what phase one reported
    std::atomic<bool> repeatable{false};  // else consumed by its launch
};

namespace opennsa::capi {

// Phase one of every operator: checks the out-pointers, then `build(ex)` converts the C
// arguments, validates them (through the native *_workspace_bytes or equivalent), sets ex.run and
// returns the workspace size. On success the new executor is live and returned through
// *executor. `phase_one` and `launcher` are the two entry points' names.
template <class Build>
void prepare_executor(const char* phase_one, const char* launcher, std::uint64_t* workspaceSize,
                      aclOpExecutor** executor, Build&& build);

// Phase two of every operator. Consumes a non-repeatable executor first, whatever happens next
// (CANN's rule), then checks that `launcher` is its entry point, the stream is live and the
// workspace is large enough, non-null and 64-byte aligned when a size is needed, and runs it on
// the stream. Throws opennsa::Error (the caller maps it to a status).
void launch(const char* launcher, void* workspace, std::uint64_t workspace_size, aclOpExecutor* executor,
            aclrtStream stream);

// Makes ex live and returns its handle.
aclOpExecutor* register_executor(std::shared_ptr<aclOpExecutor> ex);

template <class Build>
void prepare_executor(const char* phase_one, const char* launcher, std::uint64_t* workspaceSize,
                      aclOpExecutor** executor, Build&& build) {
    require(workspaceSize, "workspaceSize");
    require(executor, "executor");
    auto ex = std::make_shared<aclOpExecutor>();
    ex->launcher = launcher;
    ex->made_by = phase_one;
    ex->workspace_bytes = build(*ex);
    *workspaceSize = ex->workspace_bytes;
    *executor = register_executor(std::move(ex));
}

}  // namespace opennsa::capi
