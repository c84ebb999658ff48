// The host "device": process state, streams, contexts and the memory registry shared by src/runtime
// and src/aclnn.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>

#include "acl/acl_rt.h"

namespace opennsa::capi {

// Work runs when it is launched, on the launching thread (and the library's worker threads). A
// stream's mutex is held while its work runs, so work on one stream never overlaps and
// aclrtSynchronizeStream returns once the work in flight on it is done.
struct Stream {
    std::mutex running;
};

// The live stream behind a handle (the default stream for nullptr), or nullptr when the handle is
// not a live stream. The shared_ptr keeps it alive while work runs even if it is destroyed.
std::shared_ptr<Stream> find_stream(aclrtStream handle);

// aclDataTypeSize of an aclDataType read as its raw value (0 for a value with no fixed size or
// outside the enum). C++ callers use this: copying an out-of-range enum value is undefined.
std::size_t acl_dtype_size(long long raw) noexcept;
// "ACL_INT64" etc. for messages; "not an aclDataType" for a value outside the enum.
const char* acl_dtype_name(long long raw) noexcept;

// Process state (stream.cpp): aclInit called and not finalized; aclrtSetDevice(0) calls not yet
// reset (the device's default context exists only while this holds).
bool runtime_initialized();
bool device_open();

// context.cpp: aclrtSetDevice makes the default context current on its thread when the thread has
// no usable context.
void adopt_default_context() noexcept;

}  // namespace opennsa::capi
