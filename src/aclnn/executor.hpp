// Executors: one validated operator call, waiting for its launch. The library tracks the live
// ones, so a launch of a consumed or destroyed executor is an error and never a dangling access.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "acl/acl_rt.h"
#include "aclnn/acl_meta.h"
#include "opennsa/opennsa.hpp"

struct aclOpExecutor {
    bool backward = false;
    opennsa::ForwardArgs forward_args;    // when !backward
    opennsa::BackwardArgs backward_args;  // when backward
    opennsa::Params params;
    std::uint64_t workspace_bytes = 0;   // what GetWorkspaceSize reported
    std::atomic<bool> repeatable{false};  // else released by its launch
};

namespace opennsa::capi {

// Makes ex live and returns its handle.
aclOpExecutor* register_executor(std::shared_ptr<aclOpExecutor> ex);

// Checks the launch arguments, releases a non-repeatable executor, then runs it on the stream.
// Throws opennsa::Error (the caller maps it to a status).
void launch(bool backward, void* workspace, std::uint64_t workspace_size, aclOpExecutor* executor,
            aclrtStream stream);

}  // namespace opennsa::capi
