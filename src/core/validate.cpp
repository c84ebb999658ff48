#include "core/validate.hpp"

#include <cfloat>
#include <cmath>
#include <limits>
#include <utility>

namespace opennsa::detail {

void fail(ErrorCode code, const std::string& message) { throw Error(code, message); }

std::string shape_string(const TensorView& t) {
    std::ostringstream s;
    s << '[';
    for (int d = 0; d < t.rank && d < kMaxRank; ++d) s << (d ? ", " : "") << t.shape[d];
    s << ']';
    return s.str();
}

namespace {

bool has_zero_dim(const TensorView& t) {
    for (int d = 0; d < t.rank; ++d)
        if (t.shape[d] == 0) return true;
    return false;
}

std::int64_t magnitude(std::int64_t stride) { return stride < 0 ? -stride : stride; }

}  // namespace

bool is_float_dtype(DType t) noexcept {
    return t == DType::f16 || t == DType::bf16 || t == DType::f32 || t == DType::f64;
}

void check_present(const Arg& a) {
    if (a.t->rank == 0) fail(ErrorCode::null_pointer, std::string(a.name) + " is required but was not given");
    if (a.t->rank < 0 || a.t->rank > kMaxRank) invalid(a.name, ": rank ", a.t->rank, " is outside [1, ", kMaxRank, "]");
    if (a.t->data == nullptr && !has_zero_dim(*a.t))
        fail(ErrorCode::null_pointer, std::string(a.name) + " has a null data pointer");
    // Typed loads of a misaligned pointer are undefined behaviour (and the SIMD paths assume
    // natural alignment of every element): reject instead of guessing. An empty view reads
    // nothing, so its pointer may be anything (as it may be null).
    const std::size_t elt = dtype_size(a.t->dtype);
    if (!has_zero_dim(*a.t) && reinterpret_cast<std::uintptr_t>(a.t->data) % elt != 0)
        invalid(a.name, ": data pointer ", a.t->data, " is not aligned to its element size (", elt, " bytes, ",
                dtype_name(a.t->dtype), ")");
}

void check_dtype(const Arg& a, DType expected, const char* why) {
    if (a.t->dtype != expected)
        invalid(a.name, ": dtype ", dtype_name(a.t->dtype), " must be ", dtype_name(expected), why);
}

void check_rank(const Arg& a, int rank, const char* why) {
    if (a.t->rank != rank)
        invalid(a.name, ": rank ", a.t->rank, " (shape ", shape_string(*a.t), ") must be ", rank, why);
    for (int d = 0; d < rank; ++d)
        if (a.t->shape[d] < 0) invalid(a.name, ".shape[", d, "] = ", a.t->shape[d], " is negative");
}

void check_dim(const Arg& a, int d, std::int64_t expected, const char* what) {
    if (a.t->shape[d] != expected)
        invalid(a.name, ".shape[", d, "] = ", a.t->shape[d], " must equal ", expected, " (", what, "); shape is ",
                shape_string(*a.t));
}

void check_dims3(const Arg& a, std::int64_t d0, std::int64_t d1, std::int64_t d2, const char* n0, const char* n1,
                 const char* n2) {
    check_dim(a, 0, d0, n0);
    check_dim(a, 1, d1, n1);
    check_dim(a, 2, d2, n2);
}

void check_extent(const Arg& a, bool is_output) {
    const TensorView& t = *a.t;
    const std::int64_t elt = static_cast<std::int64_t>(dtype_size(t.dtype));
    std::int64_t numel = 1, span = 0;
    for (int d = 0; d < t.rank; ++d) {
        std::int64_t reach = 0;
        const std::int64_t stride = t.strides[d];
        if (stride == std::numeric_limits<std::int64_t>::min() || __builtin_mul_overflow(numel, t.shape[d], &numel) ||
            (t.shape[d] > 0 && (__builtin_mul_overflow(t.shape[d] - 1, magnitude(stride), &reach) ||
                                __builtin_add_overflow(span, reach, &span))))
            invalid(a.name, ": shape ", shape_string(t), " with its strides overflows int64 addressing");
    }
    std::int64_t bytes = 0;
    if (__builtin_add_overflow(span, std::int64_t{1}, &bytes) || __builtin_mul_overflow(bytes, elt, &bytes) ||
        __builtin_mul_overflow(numel, elt, &bytes))
        invalid(a.name, ": shape ", shape_string(t), " overflows int64 byte sizes");
    if (!is_output || numel <= 1) return;

    // Non-overlap: with dimensions ordered by |stride|, each stride must step past everything the
    // smaller ones reach.
    int order[kMaxRank];
    int n = 0;
    for (int d = 0; d < t.rank; ++d)
        if (t.shape[d] > 1) order[n++] = d;
    for (int i = 1; i < n; ++i)
        for (int j = i; j > 0; --j) {
            if (magnitude(t.strides[order[j - 1]]) <= magnitude(t.strides[order[j]])) break;
            std::swap(order[j - 1], order[j]);
        }
    std::int64_t reach = 0;
    for (int i = 0; i < n; ++i) {
        const std::int64_t s = magnitude(t.strides[order[i]]);
        if (s <= reach)
            invalid(a.name, ": strides overlap (dimension ", order[i], " has stride ", t.strides[order[i]],
                    "); an output must address each element once");
        reach += (t.shape[order[i]] - 1) * s;
    }
}

void check_scale(double scale, const char* name) {
    // NaN fails both comparisons.
    if (!(std::fabs(scale) <= static_cast<double>(FLT_MAX)))
        invalid(name, " = ", scale, " must be finite in fp32 (|", name, "| <= ", FLT_MAX, ")");
}

std::vector<std::int64_t> cumulative_starts(const std::vector<std::int64_t>& ends, const char* name,
                                            std::int64_t total, const char* total_name) {
    std::vector<std::int64_t> starts(1, 0);
    starts.reserve(ends.size() + 1);
    for (std::size_t b = 0; b < ends.size(); ++b) {
        if (ends[b] < 0) invalid(name, "[", b, "] = ", ends[b], " is negative (cumulative token counts)");
        if (b > 0 && ends[b] < ends[b - 1])
            invalid(name, "[", b, "] = ", ends[b], " is less than ", name, "[", b - 1, "] = ", ends[b - 1],
                    " (cumulative token counts must be non-decreasing)");
        starts.push_back(ends[b]);
    }
    if (!ends.empty() && ends.back() > total)
        invalid(name, "[", ends.size() - 1, "] = ", ends.back(), " exceeds ", total_name, " = ", total);
    return starts;
}

std::vector<std::int64_t> lengths_to_starts(const std::vector<std::int64_t>& lengths, const char* name,
                                            std::int64_t total, const char* total_name) {
    std::vector<std::int64_t> starts(1, 0);
    starts.reserve(lengths.size() + 1);
    for (std::size_t b = 0; b < lengths.size(); ++b) {
        if (lengths[b] < 0) invalid(name, "[", b, "] = ", lengths[b], " is negative (per-batch lengths)");
        std::int64_t next = 0;
        if (__builtin_add_overflow(starts.back(), lengths[b], &next))
            invalid(name, ": the sum of the lengths overflows int64 at entry ", b);
        starts.push_back(next);
    }
    if (total >= 0 && starts.back() > total)
        invalid(name, ": the lengths sum to ", starts.back(), ", more than ", total_name, " = ", total);
    return starts;
}

}  // namespace opennsa::detail
