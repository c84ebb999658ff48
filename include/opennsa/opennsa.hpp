// OpenNSA native C++ API: the selected-attention branch of Native Sparse Attention,
// forward and backward, on host memory.
//
//   opennsa::Params p{.scale = 1.0 / std::sqrt(192.0), .head_num = 16,
//                     .block_size = 64, .block_count = 16};
//   opennsa::forward({.query = q, .key = k, .value = v, .topk = idx,
//                     .out = o, .softmax_max = m, .softmax_sum = s}, p);
//
// Every tensor is a TensorView: a pointer, a dtype, a shape and strides in elements, so any
// view (transposed, sliced, offset) of a larger buffer works. Layout is TND: [tokens, heads, dim].
// The contract (shapes, batches, selection, masking, formulas, numerics) is ../shared/SPEC.md;
// docs/DESIGN.md explains how the library computes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

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
    i32,   // topk indices
    i64,
    u8,    // attention mask
    boolean,
};

OPENNSA_API const char* dtype_name(DType t) noexcept;
OPENNSA_API std::size_t dtype_size(DType t) noexcept;

// ---------------------------------------------------------------------------------------------
// Tensor views (non-owning).

inline constexpr int kMaxRank = 4;

struct OPENNSA_API TensorView {
    void* data = nullptr;
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
// Operator parameters.

inline constexpr std::int64_t kSparseModeNone = 0;    // every selected key is visible
inline constexpr std::int64_t kSparseModeCausal = 2;  // key position p visible to query position i iff p <= i

struct Params {
    double scale = 1.0;               // scaleValue: s = scale * dot(q, k)
    std::int64_t head_num = 0;        // N1, must equal query.shape[1]
    std::int64_t block_size = 64;     // selectedBlockSize (bs)
    std::int64_t block_count = 16;    // selectedBlockCount (C), must equal topk.shape[2]
    std::int64_t sparse_mode = kSparseModeCausal;
    // Cumulative token counts without a leading zero ([s0, s0+s1, ...]); both or neither.
    // Absent: one batch of all T1 query and T2 key tokens.
    std::optional<std::vector<std::int64_t>> cu_seqlens_q;
    std::optional<std::vector<std::int64_t>> cu_seqlens_kv;
};

// ---------------------------------------------------------------------------------------------
// Arguments. Shapes (SPEC.md section 1):
//   query [T1, N1, Dk], key [T2, N2, Dk], value [T2, N2, Dv], topk [T1, N2, C] int32,
//   out / out_grad [T1, N1, Dv], softmax_max / softmax_sum [T1, N1, 8] fp32.
// query, key, value, out, out_grad and the gradients share one dtype: f16, bf16, f32 or f64.

struct ForwardArgs {
    TensorView query, key, value, topk;
    TensorView atten_mask;  // optional 2-D bool/uint8; validated, never read
    TensorView out, softmax_max, softmax_sum;  // outputs
};

struct BackwardArgs {
    TensorView query, key, value, out, out_grad, softmax_max, softmax_sum, topk;
    TensorView atten_mask;  // optional 2-D bool/uint8; validated, never read
    TensorView query_grad, key_grad, value_grad;  // outputs (dq, dk, dv)
};

// ---------------------------------------------------------------------------------------------
// Errors. Every function validates all of its arguments (and the topk values) before it writes
// any output; on error it throws and the outputs are untouched.

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
// Operators.

// out, softmax_max, softmax_sum <- selected attention of query over the keys its topk blocks name.
OPENNSA_API void forward(const ForwardArgs& args, const Params& params);

// query_grad, key_grad, value_grad <- gradients given out_grad (dO) and the forward's statistics.
OPENNSA_API void backward(const BackwardArgs& args, const Params& params);

// Optional caller-provided scratch: when `workspace` holds at least *_workspace_bytes(...) bytes
// and starts at a 64-byte boundary, the operators use it instead of allocating. The size depends
// on shapes, parameters and the compute path the CPU and OPENNSA_KERNEL select (0 when no query
// row belongs to a batch); a workspace too small for the path that runs is left unused, not
// overrun.
OPENNSA_API std::size_t forward_workspace_bytes(const ForwardArgs& args, const Params& params);
OPENNSA_API std::size_t backward_workspace_bytes(const BackwardArgs& args, const Params& params);
OPENNSA_API void forward(const ForwardArgs& args, const Params& params, std::span<std::byte> workspace);
OPENNSA_API void backward(const BackwardArgs& args, const Params& params, std::span<std::byte> workspace);

// ---------------------------------------------------------------------------------------------
// Threads. Results are bitwise identical for every thread count.
// Default: env OPENNSA_NUM_THREADS if set to a positive integer, else all hardware threads.

OPENNSA_API void set_num_threads(int n);  // n < 1 restores the default
OPENNSA_API int num_threads() noexcept;

// Library version, "MAJOR.MINOR.PATCH".
OPENNSA_API const char* version() noexcept;

}  // namespace opennsa
