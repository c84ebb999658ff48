// Validation helpers every operator's problem.cpp is built from. Each check names the tensor by
// its CANN parameter name, so messages read the same from the C API, the native API and Python.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "core/error.hpp"

namespace opennsa::detail {

// A named tensor argument.
struct Arg {
    const char* name;
    const TensorView* t;
};

bool is_float_dtype(DType t) noexcept;

// Given (rank > 0; ErrorCode::null_pointer otherwise), a rank in [1, kMaxRank], a data pointer
// unless the view is empty, and that pointer aligned to the element size.
void check_present(const Arg& a);
void check_dtype(const Arg& a, DType expected, const char* why);
// Exactly `rank` dimensions, none negative.
void check_rank(const Arg& a, int rank, const char* why);
void check_dim(const Arg& a, int d, std::int64_t expected, const char* what);
// Every element address of the view, in bytes from data, fits in int64, and so does its element
// count. Outputs must also not overlap themselves: each output element is written exactly once.
void check_extent(const Arg& a, bool is_output);
// The same dimension checks on the first three dimensions.
void check_dims3(const Arg& a, std::int64_t d0, std::int64_t d1, std::int64_t d2, const char* n0, const char* n1,
                 const char* n2);

// A scale factor that must be finite once converted to fp32 (the kernels compute in fp32).
void check_scale(double scale, const char* name);

// A cumulative length array (ends without a leading zero, SPEC conventions): entries >= 0,
// non-decreasing, the last <= total. Returns the batch starts with a leading zero
// ([0, c0, c1, ...]).
std::vector<std::int64_t> cumulative_starts(const std::vector<std::int64_t>& ends, const char* name,
                                            std::int64_t total, const char* total_name);

// A per-batch length array: entries >= 0, their sum fits in int64 (and is <= total when total >=
// 0). Returns the cumulative starts with a leading zero.
std::vector<std::int64_t> lengths_to_starts(const std::vector<std::int64_t>& lengths, const char* name,
                                            std::int64_t total, const char* total_name);

}  // namespace opennsa::detail
