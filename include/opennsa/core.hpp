// OpenNSA native C++ API, the part every operator shares: element types, tensor views, errors,
// threads. Each operator has its own header (select_attention.hpp, ...); opennsa.hpp includes
// them all.
//
// Every tensor is a TensorView: a pointer, a dtype, a shape and strides in elements, so any view
// (transposed, sliced, offset, broadcast with stride 0) of a larger buffer works. The operator
// contracts are docs/spec/; docs/DESIGN.md explains how the library computes them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>

#if defined(_WIN32)
#define OPENNSA_API __declspec(dllexport)
#else
#define OPENNSA_API __attribute__((visibility("default")))
#endif

namespace opennsa {

// ---------------------------------------------------------------------------------------------
// Element types.

enum class DType : int {
    f16,   // IEEE binary16
    bf16,  // bfloat16
    f32,   // IEEE binary32
    f64,   // IEEE binary64 (native API only: for gradient checks; runs the fp64 path)
    i32,   // block indices
    i64,
    u8,    // masks
    boolean,
};

OPENNSA_API const char* dtype_name(DType t) noexcept;
OPENNSA_API std::size_t dtype_size(DType t) noexcept;

// ---------------------------------------------------------------------------------------------
// Tensor views (non-owning).

inline constexpr int kMaxRank = 4;

struct OPENNSA_API TensorView {
    void* data = nullptr;  // must be aligned to the element size
    DType dtype = DType::f32;
    int rank = 0;
    std::int64_t shape[kMaxRank] = {};
    std::int64_t strides[kMaxRank] = {};  // in elements, any sign; a view of a larger buffer

    // A dense row-major view of `data`.
    static TensorView contiguous(const void* data, DType dtype,
                                 std::initializer_list<std::int64_t> shape);
    // A view with explicit strides (elements). `shape` and `strides` must have the same length.
    static TensorView strided(const void* data, DType dtype,
                              std::initializer_list<std::int64_t> shape,
                              std::initializer_list<std::int64_t> strides);

    std::int64_t numel() const noexcept;
    bool empty() const noexcept { return rank == 0; }  // "no tensor" (for optional inputs)
};

// ---------------------------------------------------------------------------------------------
// Errors. Every operator validates all of its arguments (and the data-dependent values such as
// block indices) before it writes any output; on error it throws and the outputs are untouched.

enum class ErrorCode : int {
    null_pointer = 1,      // a required tensor has no data pointer (ACLNN_ERR_PARAM_NULLPTR)
    invalid_argument = 2,  // shape, dtype, parameter or index rule broken (ACLNN_ERR_PARAM_INVALID)
    internal = 3,          // out of memory or a library bug (ACLNN_ERR_INNER)
};

class OPENNSA_API Error : public std::runtime_error {
public:
    Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
    ErrorCode code() const noexcept { return code_; }

private:
    ErrorCode code_;
};

// ---------------------------------------------------------------------------------------------
// Threads. Results are bitwise identical for every thread count.
// Default: env OPENNSA_NUM_THREADS if set to a positive integer, else all hardware threads.

OPENNSA_API void set_num_threads(int n);  // n < 1 restores the default
OPENNSA_API int num_threads() noexcept;

// A host framework's threads, lent to the library so that two pools do not fight over the cores
// (the PyTorch extension lends torch's intra-op pool: its idle OpenMP workers spin for a while after
// each torch op, and a second pool's threads lose those cores in the meantime).
//   available(): threads the host would run a parallel region on now; below 2 the library uses its
//                own pool (with no host workers there is nothing to contend with).
//   run(workers, body, ctx): calls body(ctx, w) once for every w in [0, workers), concurrently as
//                far as the host can (a thread may take several w one after another), and returns
//                when all have returned. body does not throw.
// With a host installed, a parallel region uses min(num_threads(), available()) workers on it.
// Results stay bitwise identical: which thread runs a task never changes what the task computes.
struct HostThreads {
    int (*available)();
    void (*run)(int workers, void (*body)(void* ctx, int worker), void* ctx);
};
OPENNSA_API void set_host_threads(const HostThreads* host) noexcept;  // copied; nullptr: own pool only

// Library version, "MAJOR.MINOR.PATCH".
OPENNSA_API const char* version() noexcept;

}  // namespace opennsa
