// Shared machinery of OpenNSA's libFuzzer targets (docs/FUZZING.md).
//
// A target decodes its input into a Case first (every decision comes from `Input`), then runs
// it, then checks what SPEC.md section 9 promises:
//   - an error is a documented code (161001 / 161002; 561000 only where real memory runs out)
//     with a one-line message naming the function, and changes no byte of any tensor;
//   - a success writes every element of every output view, no byte outside them, and leaves
//     every input untouched;
//   - a call the rules forbid is rejected, a call they allow is accepted (where the harness can
//     tell: Case::reject / Case::unknown keep the reasons).
// A broken promise prints what happened and traps, which libFuzzer records as a crash.
//
// Tensors are views over small buffers the harness owns and sizes exactly (so ASan sees any
// access past them). A huge logical shape therefore comes only from zero or overlapping strides,
// from an empty view, or from what a C caller declares (storage dims, offsets).
//
// Decoding and running are separate so that fuzz/make_regressions.cpp can encode hand-written
// reproducers in the same input format (see Input).
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "acl/acl.h"
#include "aclnn/acl_meta.h"
#include "aclnn/aclnn_base.h"
#include "opennsa/opennsa.hpp"

namespace fuzz {

constexpr std::int64_t kI64Min = std::numeric_limits<std::int64_t>::min();
constexpr std::int64_t kI64Max = std::numeric_limits<std::int64_t>::max();

// ---------------------------------------------------------------------------------------------
// Limits that keep one input fast. They bound *real* work (what the harness hands the library to
// compute), never what the library may be asked to validate: validation must be cheap whatever
// the logical sizes, and a small problem that is slow or asks for huge memory is a finding.

constexpr std::int64_t kMaxSpan = 1 << 14;          // elements a tensor's buffer may hold
constexpr std::uint64_t kMaxWorkspace = 16u << 20;  // bytes the harness allocates for a launch
constexpr double kMaxWork = 4e6;                    // multiply-adds the harness lets one call do
constexpr double kMaxOutputElements = 1 << 14;      // output elements one call may write

// ---------------------------------------------------------------------------------------------
// Broken promises.

// What the current input is, printed when a promise breaks (set by the targets).
inline std::function<void(std::FILE*)> g_describe;

// OPENNSA_FUZZ_VERBOSE=1: each input prints what it did (for replaying single files).
inline bool verbose() {
    static const bool on = std::getenv("OPENNSA_FUZZ_VERBOSE") != nullptr;
    return on;
}
#define FUZZ_LOG(...)                                             \
    do {                                                          \
        if (::fuzz::verbose()) std::fprintf(stderr, __VA_ARGS__); \
    } while (0)

[[noreturn]] __attribute__((format(printf, 1, 2))) inline void broken(const char* format, ...) {
    std::fflush(stdout);
    std::fprintf(stderr, "\n==== OpenNSA fuzz: BROKEN PROMISE: ");
    va_list args;
    va_start(args, format);
    std::vfprintf(stderr, format, args);
    va_end(args);
    std::fprintf(stderr, "\n");
    if (g_describe) g_describe(stderr);
    std::fflush(stderr);
    __builtin_trap();
}

// ---------------------------------------------------------------------------------------------
// Decisions. Every choice a target makes is one `integer(name, lo, hi)` call. The fuzzer answers
// from its bytes (FuzzedDataProvider: from the end of the input, as many bytes as the range
// needs, and lo once the bytes run out); the regression generator answers from a table of named
// values. Names are relative to the enclosing Scope, e.g. "key/strides". Value lo is always the
// ordinary choice, so an exhausted input decodes to a plain, valid call.

class Input {
public:
    virtual ~Input() = default;
    virtual std::int64_t integer(const char* name, std::int64_t lo, std::int64_t hi) = 0;
    virtual void enter(const char* /*scope*/) {}
    virtual void leave() {}

    // True once in `n` (the highest value), false for the default.
    bool chance(const char* name, std::int64_t n) { return integer(name, 0, n - 1) == n - 1; }
    template <class T, std::size_t N>
    T pick(const char* name, const T (&options)[N]) {
        return options[integer(name, 0, static_cast<std::int64_t>(N) - 1)];
    }
};

class FuzzInput final : public Input {
public:
    FuzzInput(const std::uint8_t* data, std::size_t size) : fdp_(data, size) {}
    std::int64_t integer(const char*, std::int64_t lo, std::int64_t hi) override {
        return fdp_.ConsumeIntegralInRange<std::int64_t>(lo, hi);
    }

private:
    FuzzedDataProvider fdp_;
};

struct Scope {
    Input& in;
    Scope(Input& input, const char* name) : in(input) { in.enter(name); }
    ~Scope() { in.leave(); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
};

// Values that break sizes: int32 and int64 edges, powers of two that wrap products.
inline constexpr std::int64_t kEdgeValues[] = {-1,
                                               -2,
                                               0,
                                               1,
                                               2,
                                               7,
                                               8,
                                               16,
                                               64,
                                               (std::int64_t{1} << 31) - 1,
                                               std::int64_t{1} << 31,
                                               std::int64_t{1} << 32,
                                               std::int64_t{1} << 40,
                                               std::int64_t{1} << 57,
                                               std::int64_t{1} << 58,
                                               std::int64_t{1} << 61,
                                               std::int64_t{1} << 62,
                                               kI64Max,
                                               kI64Min,
                                               -(std::int64_t{1} << 61)};

// A size-like value: mostly small, sometimes an edge value or anything at all.
inline std::int64_t decide_size(Input& in, const char* name, std::int64_t lo, std::int64_t hi) {
    Scope s(in, name);
    switch (in.integer("kind", 0, 15)) {
        case 14: return in.pick("edge", kEdgeValues);
        case 15: return in.integer("wild", kI64Min, kI64Max);
        default: return in.integer("value", lo, hi);
    }
}

// Deterministic data from a seed (tensor contents are not worth input bytes).
struct Rng {
    std::uint64_t state;
    std::uint64_t next() {
        std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    double uniform(double lo, double hi) { return lo + (hi - lo) * static_cast<double>(next() >> 11) * 0x1.0p-53; }
    std::int64_t below(std::int64_t n) {
        return n <= 0 ? 0 : static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(n));
    }
};

// memcmp that accepts empty (possibly null) ranges.
inline bool same_bytes(const void* a, const void* b, std::size_t n) { return n == 0 || std::memcmp(a, b, n) == 0; }

// ---------------------------------------------------------------------------------------------
// Element types, as the harness knows them. A tensor carries the raw dtype value it passes (an
// aclDataType or an opennsa::DType, possibly outside the enum) and the element size it is laid
// out with.

enum class Api { capi, native };

enum class Elt { f16, bf16, f32, f64, i32, i64, u8, boolean, i8, unknown };

inline const char* elt_name(Elt e) {
    constexpr const char* names[] = {"fp16",  "bf16",  "fp32", "fp64", "int32",
                                     "int64", "uint8", "bool", "int8", "unknown"};
    return names[static_cast<int>(e)];
}

inline int raw_of(Api api, Elt e) {
    if (api == Api::capi) {
        switch (e) {
            case Elt::f16: return ACL_FLOAT16;
            case Elt::bf16: return ACL_BF16;
            case Elt::f32: return ACL_FLOAT;
            case Elt::f64: return ACL_DOUBLE;
            case Elt::i32: return ACL_INT32;
            case Elt::i64: return ACL_INT64;
            case Elt::u8: return ACL_UINT8;
            case Elt::boolean: return ACL_BOOL;
            case Elt::i8: return ACL_INT8;
            case Elt::unknown: break;
        }
        return 100;
    }
    switch (e) {
        case Elt::f16: return static_cast<int>(opennsa::DType::f16);
        case Elt::bf16: return static_cast<int>(opennsa::DType::bf16);
        case Elt::f32: return static_cast<int>(opennsa::DType::f32);
        case Elt::f64: return static_cast<int>(opennsa::DType::f64);
        case Elt::i32: return static_cast<int>(opennsa::DType::i32);
        case Elt::i64: return static_cast<int>(opennsa::DType::i64);
        case Elt::u8: return static_cast<int>(opennsa::DType::u8);
        case Elt::boolean: return static_cast<int>(opennsa::DType::boolean);
        case Elt::i8:
        case Elt::unknown: break;
    }
    return 42;  // not a DType
}

inline Elt elt_of(Api api, int raw) {
    for (Elt e : {Elt::f16, Elt::bf16, Elt::f32, Elt::f64, Elt::i32, Elt::i64, Elt::u8, Elt::boolean, Elt::i8})
        if ((api == Api::capi || e != Elt::i8) && raw_of(api, e) == raw) return e;
    return Elt::unknown;
}

inline std::size_t elt_size(Elt e) {
    switch (e) {
        case Elt::f16:
        case Elt::bf16: return 2;
        case Elt::f32:
        case Elt::i32: return 4;
        case Elt::f64:
        case Elt::i64: return 8;
        case Elt::u8:
        case Elt::boolean:
        case Elt::i8: return 1;
        case Elt::unknown: break;
    }
    return 2;  // any: the library must reject the dtype before reading
}

// aclDataTypeSize as CANN defines it, for every value (0 for those without a fixed size).
inline std::size_t acl_dtype_size(int raw) {
    switch (raw) {
        case ACL_INT8:
        case ACL_UINT8:
        case ACL_BOOL: return 1;
        case ACL_FLOAT16:
        case ACL_BF16:
        case ACL_INT16:
        case ACL_UINT16: return 2;
        case ACL_FLOAT:
        case ACL_INT32:
        case ACL_UINT32: return 4;
        case ACL_INT64:
        case ACL_UINT64:
        case ACL_DOUBLE:
        case ACL_COMPLEX64: return 8;
        case ACL_COMPLEX128: return 16;
        default: return 0;
    }
}

// A C caller may pass any int where an enum is expected. In C++ the harness must not load such a
// value as the enum itself (UBSan would blame the harness), so it builds the argument from bytes;
// the library receives exactly what a C caller would pass.
template <class E>
__attribute__((no_sanitize("enum"))) inline E as_enum(int raw) {
    static_assert(sizeof(E) == sizeof(int));
    E e;
    std::memcpy(&e, &raw, sizeof e);
    return e;
}
template <class E>
inline int raw_int(const E& e) {
    int v;
    std::memcpy(&v, &e, sizeof v);
    return v;
}

// Float encodings, for filling inputs with finite values.
inline std::uint16_t f32_to_f16_bits(float f) { return aclFloatToFloat16(f); }
inline std::uint16_t f32_to_bf16_bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    return static_cast<std::uint16_t>((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

// ---------------------------------------------------------------------------------------------
// Tensors.

// inout: a tensor the call updates in place (a cache): filled like an input, it may change only
// inside its view and only when the call succeeds.
enum class Role { input, output, inout };

// What an operator's rules want of one argument.
struct TensorPlan {
    const char* name;
    Role role = Role::input;
    bool optional = false;            // absent unless the input makes it present
    std::vector<std::int64_t> shape;  // the shape the rules want
    Elt elt = Elt::f32;               // the dtype the rules want
    // Fills one input element (the buffer's e-th element, of the planned dtype); null: random
    // finite floats for float dtypes, 0/1 for bool/uint8, small integers otherwise.
    std::function<void(unsigned char* element, std::int64_t e)> fill;
};

constexpr int kMaxHarnessRank = 10;  // beyond CANN's 8 and the native API's 4, to test both limits

struct Tensor {
    TensorPlan plan;
    Api api = Api::capi;
    bool present = true;  // C: non-null handle; native: rank != 0
    int raw_dtype = 0;
    Elt elt = Elt::f32;
    std::size_t esize = 4;
    int rank = 0;
    std::int64_t shape[kMaxHarnessRank] = {};
    std::int64_t strides[kMaxHarnessRank] = {};

    std::unique_ptr<unsigned char[]> buffer;  // exactly `bytes` long
    std::size_t bytes = 0;
    std::int64_t origin = 0;  // byte offset in buffer of element (0, ..., 0)
    bool null_data = false;

    // C API: tensorData = buffer + data_at; element index offset + sum(i * stride) from there.
    std::int64_t data_at = 0;
    std::int64_t offset = 0;
    bool pass_null_strides = false;
    std::vector<std::int64_t> storage;  // empty: not given
    int raw_format = ACL_FORMAT_ND;

    // Facts the harness derived while building it.
    bool empty = false;           // a dimension is 0 (or negative): no element is addressed
    bool altered = false;         // strides were replaced to fit the buffer
    bool lying = false;           // the view reaches past the buffer (C API, with storage dims saying so)
    int misalign = 0;             // bytes the elements are shifted off their natural alignment
    std::int64_t lo = 0, hi = 0;  // lowest / highest element index reached, relative to origin

    std::vector<unsigned char> snapshot;

    const char* name() const { return plan.name; }
    bool is_output() const { return plan.role == Role::output; }
    bool is_written() const { return plan.role != Role::input; }
    unsigned char* data_pointer() const { return null_data ? nullptr : buffer.get() + data_at; }
    unsigned char* origin_pointer() const { return null_data ? nullptr : buffer.get() + origin; }

    double logical_numel() const {
        if (!present) return 0;
        double n = 1;
        for (int d = 0; d < rank; ++d) n *= shape[d] > 0 ? static_cast<double>(shape[d]) : 0.0;
        return n;
    }
    bool shape_is(const std::vector<std::int64_t>& want) const {
        if (rank != static_cast<int>(want.size())) return false;
        for (int d = 0; d < rank; ++d)
            if (shape[d] != want[d]) return false;
        return true;
    }
    std::string shape_string() const {
        std::string s = "[";
        for (int d = 0; d < rank; ++d) s += (d ? ", " : "") + std::to_string(shape[d]);
        return s + "]";
    }
    std::string strides_string() const {
        std::string s = "(";
        for (int d = 0; d < rank; ++d) s += (d ? ", " : "") + std::to_string(strides[d]);
        return s + ")";
    }

    // Byte offset in buffer of element idx; false when it is not inside the buffer.
    bool element_at(const std::int64_t* idx, std::int64_t* at) const {
        __int128 b = origin;
        for (int d = 0; d < rank; ++d) {
            if (idx[d] == 0) continue;
            if (strides[d] > kMaxSpan || strides[d] < -kMaxSpan) return false;  // far past any buffer
            b += static_cast<__int128>(idx[d]) * strides[d] * static_cast<__int128>(esize);
        }
        if (b < 0 || b + static_cast<__int128>(esize) > static_cast<__int128>(bytes)) return false;
        *at = static_cast<std::int64_t>(b);
        return true;
    }
    template <class T>
    T read(std::int64_t i, std::int64_t j, std::int64_t k) const {  // rank-3 read (harness oracles)
        const std::int64_t idx[3] = {i, j, k};
        return get<T>(idx);
    }
    // Any rank (idx has `rank` entries).
    template <class T>
    T get(const std::int64_t* idx) const {
        std::int64_t at = 0;
        if (!element_at(idx, &at)) broken("harness bug: an element of %s outside its buffer", name());
        T v;
        std::memcpy(&v, buffer.get() + at, sizeof v);
        return v;
    }
    // Stores v at idx when that element is in the buffer (false when it is not).
    template <class T>
    bool put(const std::int64_t* idx, T v) {
        std::int64_t at = 0;
        if (null_data || !element_at(idx, &at)) return false;
        std::memcpy(buffer.get() + at, &v, sizeof v);
        return true;
    }
    // A float element as a double (f16, bf16, f32, f64 only).
    double load(const std::int64_t* idx) const {
        switch (elt) {
            case Elt::f16: return aclFloat16ToFloat(get<std::uint16_t>(idx));
            case Elt::bf16: {
                const std::uint32_t u = std::uint32_t{get<std::uint16_t>(idx)} << 16;
                float f;
                std::memcpy(&f, &u, 4);
                return f;
            }
            case Elt::f32: return get<float>(idx);
            case Elt::f64: return get<double>(idx);
            default: broken("harness bug: load() of %s, which is not a float tensor", name());
        }
    }

    // Calls fn(byte offset) for every element of the view (numel must be small).
    template <class Fn>
    void for_each_element(Fn&& fn) const {
        for_each_index([&](const std::int64_t*, std::int64_t at) { fn(at); });
    }
    // The same with the element's index: fn(idx, byte offset).
    template <class Fn>
    void for_each_index(Fn&& fn) const {
        if (!present || empty) return;
        std::int64_t idx[kMaxHarnessRank] = {};
        for (;;) {
            std::int64_t at = 0;
            if (!element_at(idx, &at)) broken("harness bug: %s has an element outside its buffer", name());
            fn(static_cast<const std::int64_t*>(idx), at);
            int d = rank - 1;
            while (d >= 0 && ++idx[d] == shape[d]) idx[d--] = 0;
            if (d < 0) return;
        }
    }
};

// Dense row-major strides in the library's convention (a 0-length dimension counts as 1).
inline bool dense_strides(int rank, const std::int64_t* shape, std::int64_t* strides) {
    std::int64_t s = 1;
    for (int d = rank - 1; d >= 0; --d) {
        strides[d] = s;
        if (__builtin_mul_overflow(s, std::max<std::int64_t>(shape[d], 1), &s)) return false;
    }
    return true;
}

// Every decision that shapes one tensor, in this order, inside a scope named after the tensor
// (the reproducers name them, e.g. "key/strides"):
//   absent | present, shape (+ dim, value/..., rank, extra, d/...), dtype (+ dtype_pick, dtype_raw),
//   strides (+ null_strides, perm, pad, flip, zero, stride, stride_wild, stride_value, stride_edge),
//   before, after, null_data, misalign (+ shift), then for the C API only: offset, storage (+ cut,
//   storage_k, storage_rank, storage_dim/..., storage_edge), offset_wild (+ offset_value,
//   offset_edge), format (+ format_raw); then the fill's own decisions, if any.
class TensorBuilder {
public:
    TensorBuilder(Input& in, Api api, Rng& rng) : in_(in), api_(api), rng_(rng) {}

    // strict: no deliberate rule breaking (the executor target wants valid calls).
    std::unique_ptr<Tensor> build(const TensorPlan& plan, bool strict) {
        Scope scope(in_, plan.name);
        auto t = std::make_unique<Tensor>();
        t->plan = plan;
        t->api = api_;
        t->present = plan.optional ? in_.chance("present", 4) : !(!strict && in_.chance("absent", 32));
        if (!t->present) return t;
        decide_shape(*t, strict);
        decide_dtype(*t, strict);
        decide_strides(*t, strict);
        place(*t, strict);
        fill(*t);
        t->plan.fill = nullptr;  // it refers to the decoder's state, gone after decoding
        return t;
    }

private:
    void decide_shape(Tensor& t, bool strict) {
        const int want = static_cast<int>(t.plan.shape.size());
        t.rank = want;
        for (int d = 0; d < want; ++d) t.shape[d] = t.plan.shape[static_cast<std::size_t>(d)];
        if (strict) return;
        switch (in_.integer("shape", 0, 15)) {
            case 13: {  // one dimension off
                if (want == 0) break;
                const auto d = static_cast<int>(in_.integer("dim", 0, want - 1));
                t.shape[d] = decide_size(in_, "value", 0, 40);
                break;
            }
            case 14: {  // another rank; kept dimensions stay, new ones are small
                t.rank = static_cast<int>(in_.integer("rank", 0, kMaxHarnessRank));
                for (int d = want; d < t.rank; ++d) t.shape[d] = in_.integer("extra", 0, 4);
                break;
            }
            case 15: {  // anything
                t.rank = static_cast<int>(in_.integer("rank", 0, kMaxHarnessRank));
                for (int d = 0; d < t.rank; ++d) t.shape[d] = decide_size(in_, "d", 0, 40);
                break;
            }
            default: break;
        }
        if (api_ == Api::native) t.rank = std::min(t.rank, opennsa::kMaxRank + 1);
    }

    void decide_dtype(Tensor& t, bool strict) {
        t.raw_dtype = raw_of(api_, t.plan.elt);
        if (!strict) {
            switch (in_.integer("dtype", 0, 15)) {
                case 14: {
                    static constexpr Elt kAll[] = {Elt::f16, Elt::bf16, Elt::f32,     Elt::f64, Elt::i32,
                                                   Elt::i64, Elt::u8,   Elt::boolean, Elt::i8};
                    t.raw_dtype = raw_of(api_, in_.pick("dtype_pick", kAll));
                    break;
                }
                case 15:  // any value, also ones outside the enum
                    t.raw_dtype = static_cast<int>(in_.integer("dtype_raw", -2, 40));
                    break;
                default: break;
            }
        }
        t.elt = elt_of(api_, t.raw_dtype);
        t.esize = elt_size(t.elt);
    }

    void decide_strides(Tensor& t, bool strict) {
        const int r = t.rank;
        std::int64_t* s = t.strides;
        const bool dense_ok = dense_strides(r, t.shape, s);
        // Strict calls keep to layouts that are valid for outputs too (no broadcast).
        const std::int64_t mode = in_.integer("strides", 0, strict ? 3 : 7);
        auto permuted = [&] {  // dense over a permutation of the dimensions
            int order[kMaxHarnessRank];
            for (int d = 0; d < r; ++d) order[d] = d;
            for (int i = r - 1; i > 0; --i) std::swap(order[i], order[in_.integer("perm", 0, i)]);
            std::int64_t step = 1;
            for (int i = r - 1; i >= 0; --i) {
                s[order[i]] = step;
                step = mul_or_max(step, std::max<std::int64_t>(t.shape[order[i]], 1));
            }
        };
        auto padded = [&] {  // row-major with gaps between rows
            std::int64_t step = 1 + in_.integer("pad", 0, 2);
            for (int d = r - 1; d >= 0; --d) {
                s[d] = step;
                step = mul_or_max(step, std::max<std::int64_t>(t.shape[d], 1));
                step = add_or_max(step, in_.integer("pad", 0, 3));
            }
        };
        auto flipped = [&] {
            const std::int64_t mask = in_.integer("flip", 0, (std::int64_t{1} << r) - 1);
            for (int d = 0; d < r; ++d)
                if (mask >> d & 1) s[d] = -s[d];
        };
        switch (mode) {
            case 0: t.pass_null_strides = api_ == Api::capi && dense_ok && in_.chance("null_strides", 2); break;
            case 1: permuted(); break;
            case 2: padded(); break;
            case 3: flipped(); break;
            case 4: {  // broadcast: stride 0 (an input may be a broadcast view; an output may not)
                const std::int64_t mask = in_.integer("zero", 0, (std::int64_t{1} << r) - 1);
                for (int d = 0; d < r; ++d)
                    if (mask >> d & 1) s[d] = 0;
                break;
            }
            case 5:
                for (int d = 0; d < r; ++d) s[d] = in_.integer("stride", -16, 16);
                break;
            case 6:
                for (int d = 0; d < r; ++d)
                    s[d] = in_.chance("stride_wild", 2) ? in_.integer("stride_value", kI64Min, kI64Max)
                                                        : in_.pick("stride_edge", kEdgeValues);
                break;
            case 7:
                permuted();
                flipped();
                break;
        }
        if (mode != 0) t.pass_null_strides = false;
    }

    static std::int64_t mul_or_max(std::int64_t a, std::int64_t b) {
        std::int64_t r;
        return __builtin_mul_overflow(a, b, &r) ? kI64Max : r;
    }
    static std::int64_t add_or_max(std::int64_t a, std::int64_t b) {
        std::int64_t r;
        return __builtin_add_overflow(a, b, &r) ? kI64Max : r;
    }

    // Lowest and highest element index the view reaches (relative to its origin), exactly.
    // Saturates at +-2^100 (far past any buffer) so that ten dimensions cannot overflow.
    static void reach(const Tensor& t, __int128& lo, __int128& hi) {
        constexpr __int128 kFar = __int128{1} << 100;
        lo = hi = 0;
        for (int d = 0; d < t.rank; ++d) {
            const __int128 r = static_cast<__int128>(t.shape[d] - 1) * t.strides[d];
            (r < 0 ? lo : hi) += r;
            lo = std::max(lo, -kFar);
            hi = std::min(hi, kFar);
        }
    }

    // Sizes the buffer to the view (plus slack) and places the data pointer; C callers also
    // choose the offset, storage dims and format.
    void place(Tensor& t, bool strict) {
        for (int d = 0; d < t.rank; ++d)
            if (t.shape[d] <= 0) t.empty = true;
        __int128 lo = 0, hi = 0;
        if (!t.empty) {
            reach(t, lo, hi);
            if (hi - lo + 1 > kMaxSpan) {
                // Too big to own: make the largest dimensions broadcast until the rest fits
                // densely. Huge logical sizes stay; memory does not.
                t.altered = true;
                t.pass_null_strides = false;
                bool zero[kMaxHarnessRank] = {};
                for (;;) {
                    std::int64_t step = 1;
                    for (int d = t.rank - 1; d >= 0; --d) {
                        t.strides[d] = zero[d] ? 0 : step;
                        if (!zero[d]) step = mul_or_max(step, t.shape[d]);
                    }
                    reach(t, lo, hi);
                    if (hi - lo + 1 <= kMaxSpan) break;
                    int widest = -1;
                    for (int d = 0; d < t.rank; ++d)
                        if (!zero[d] && t.shape[d] > 1 && (widest < 0 || t.shape[d] > t.shape[widest])) widest = d;
                    zero[widest] = true;
                }
            }
        }
        t.lo = static_cast<std::int64_t>(lo);
        t.hi = static_cast<std::int64_t>(hi);
        const std::int64_t span = t.empty ? 0 : t.hi - t.lo + 1;
        const std::int64_t before = in_.integer("before", 0, 3), after = in_.integer("after", 0, 3);
        t.null_data = !strict && in_.chance("null_data", 32);
        if (!strict && t.esize > 1 && in_.chance("misalign", 16))
            t.misalign = 1 + static_cast<int>(in_.integer("shift", 0, static_cast<std::int64_t>(t.esize) - 2));
        const auto es = static_cast<std::int64_t>(t.esize);
        std::int64_t elements = before + span + after;
        t.origin = t.misalign + (before - t.lo) * es;
        t.data_at = t.misalign;  // tensorData at the buffer's first element

        if (api_ == Api::capi && !strict) {
            const std::int64_t offset_mode = in_.integer("offset", 0, 7);
            const std::int64_t storage_mode = in_.integer("storage", 0, 15);
            if (storage_mode == 13 && span > 1) {  // a view that reaches past its buffer, storage exact
                const std::int64_t cut = 1 + in_.integer("cut", 0, span - 2);
                elements = before + span - cut;
                t.lying = true;
            }
            t.bytes = static_cast<std::size_t>(t.misalign + elements * es);
            if (offset_mode == 5) t.data_at = t.origin;
            if (offset_mode == 6) t.data_at = t.misalign + elements * es;  // one past the end
            t.offset = (t.origin - t.data_at) / es;
            const std::int64_t avail = (static_cast<std::int64_t>(t.bytes) - t.data_at) / es;
            switch (storage_mode) {
                case 10: t.storage = {avail}; break;
                case 11: {
                    const std::int64_t k = in_.integer("storage_k", 1, 8);
                    t.storage = {avail / k, k};
                    break;
                }
                case 12: {
                    const std::int64_t n = in_.integer("storage_rank", 0, kMaxHarnessRank);
                    for (std::int64_t i = 0; i < n; ++i) t.storage.push_back(decide_size(in_, "storage_dim", 0, 64));
                    break;
                }
                case 13:
                    if (t.lying) t.storage = {avail};
                    break;
                case 14:
                    t.storage = {in_.pick("storage_edge", kEdgeValues), in_.pick("storage_edge", kEdgeValues)};
                    break;
                case 15: t.storage = {std::max<std::int64_t>(avail - 1, 0)}; break;
                default: break;
            }
            // A far offset only where nothing can be read through it: an empty view, or storage
            // dims that honestly describe the buffer (the library must then reject the view).
            if (offset_mode == 7 && (t.empty || honest_storage(t.storage, avail))) {
                t.offset = in_.chance("offset_wild", 2) ? in_.integer("offset_value", kI64Min, kI64Max)
                                                        : in_.pick("offset_edge", kEdgeValues);
                // A far offset may still land the view inside the (honest) storage: the view then
                // starts there, and the harness must read and poison it there too.
                // (An empty view's storage may be anything, so only a non-empty one is measured.)
                if (!t.empty) {
                    const __int128 first = static_cast<__int128>(t.offset) + t.lo,
                                   last = static_cast<__int128>(t.offset) + t.hi;
                    __int128 numel = 1;
                    for (std::int64_t d : t.storage) numel *= d;  // honest: at most avail
                    if (first >= 0 && last < numel) t.origin = t.data_at + t.offset * es;
                }
            }
            switch (in_.integer("format", 0, 7)) {
                case 4: t.raw_format = ACL_FORMAT_NCHW; break;
                case 5: t.raw_format = ACL_FORMAT_NHWC; break;
                case 6: t.raw_format = ACL_FORMAT_UNDEFINED; break;
                case 7: t.raw_format = static_cast<int>(in_.integer("format_raw", -100, 100)); break;
                default: break;
            }
        } else {
            t.bytes = static_cast<std::size_t>(t.misalign + elements * es);
            t.offset = (t.origin - t.data_at) / es;  // C API: tensorData at the buffer's start
        }
        t.buffer.reset(new unsigned char[std::max<std::size_t>(t.bytes, 1)]);
        std::memset(t.buffer.get(), 0, t.bytes);
    }

    void fill(Tensor& t) {
        const auto es = static_cast<std::int64_t>(t.esize);
        const std::int64_t count = (static_cast<std::int64_t>(t.bytes) - t.misalign) / es;
        for (std::int64_t e = 0; e < count; ++e) {
            unsigned char* p = t.buffer.get() + t.misalign + e * es;
            if (t.plan.fill && t.elt == t.plan.elt) {
                t.plan.fill(p, e);
                continue;
            }
            const float f = static_cast<float>(rng_.uniform(-1.0, 1.0));
            switch (t.elt) {
                case Elt::f16: store(p, f32_to_f16_bits(f)); break;
                case Elt::bf16: store(p, f32_to_bf16_bits(f)); break;
                case Elt::f32: store(p, f); break;
                case Elt::f64: store(p, static_cast<double>(f)); break;
                case Elt::u8:
                case Elt::boolean: *p = static_cast<unsigned char>(rng_.next() & 1); break;
                case Elt::i32: store(p, static_cast<std::int32_t>(rng_.below(9)) - 1); break;
                default:
                    for (std::int64_t b = 0; b < es; ++b) p[b] = static_cast<unsigned char>(rng_.next());
                    break;
            }
        }
    }

    template <class T>
    static void store(unsigned char* p, T v) {
        std::memcpy(p, &v, sizeof v);
    }

    static bool honest_storage(const std::vector<std::int64_t>& dims, std::int64_t avail) {
        if (dims.empty() || dims.size() > 8) return false;
        __int128 n = 1;
        for (std::int64_t d : dims) {
            if (d < 0) return false;
            n *= d;
            if (n > avail) return false;
        }
        return true;
    }

    Input& in_;
    Api api_;
    Rng& rng_;
};

// ---------------------------------------------------------------------------------------------
// A case: the tensors of one call, what the harness knows about its validity, and the byte-level
// checks of SPEC 9.

class Case {
public:
    Api api = Api::capi;
    std::vector<std::unique_ptr<Tensor>> tensors;
    std::vector<std::string> rejects;   // rules the call breaks: it must be rejected
    std::vector<std::string> unknowns;  // why the harness cannot tell whether it is valid

    Tensor* add(std::unique_ptr<Tensor> t) {
        tensors.push_back(std::move(t));
        Tensor* p = tensors.back().get();
        judge_memory(*p);
        return p;
    }
    template <class... Parts>
    void reject(const Parts&... parts) {
        rejects.push_back(concat(parts...));
    }
    template <class... Parts>
    void unknown(const Parts&... parts) {
        unknowns.push_back(concat(parts...));
    }
    bool must_reject() const { return !rejects.empty(); }
    // Drops the verdicts about one tensor (each starts with its name).
    void forget(const char* name) {
        const std::string n(name);
        auto about = [&](const std::string& r) {
            return r.size() > n.size() && r.compare(0, n.size(), n) == 0 && (r[n.size()] == ' ' || r[n.size()] == ':');
        };
        rejects.erase(std::remove_if(rejects.begin(), rejects.end(), about), rejects.end());
        unknowns.erase(std::remove_if(unknowns.begin(), unknowns.end(), about), unknowns.end());
    }
    bool clean() const { return rejects.empty() && unknowns.empty(); }

    double output_elements() const {
        double n = 0;
        for (auto& t : tensors)
            if (t->is_written()) n += t->logical_numel();
        return n;
    }
    double logical_elements() const {
        double n = 0;
        for (auto& t : tensors) n += t->logical_numel();
        return n;
    }

    // Before a call: outputs poisoned with 0xFF bytes (a NaN no arithmetic produces; integer
    // outputs get 0xA5, since 0xFF... is -1, a value index outputs write), every buffer
    // remembered (in/out tensors keep their contents).
    void arm() {
        for (auto& t : tensors) {
            if (!t->buffer) continue;  // absent
            if (t->is_output()) std::memset(t->buffer.get(), poison_of(*t), t->bytes);
            t->snapshot.assign(t->buffer.get(), t->buffer.get() + t->bytes);
        }
    }

    // After a failed call: no byte of any tensor changed.
    void expect_untouched(const char* call) const {
        for (auto& t : tensors)
            if (!same_bytes(t->snapshot.data(), t->buffer.get(), t->bytes))
                broken("%s failed but changed %s %s (%s)", call, t->is_output() ? "output" : "input", t->name(),
                       first_difference(*t).c_str());
    }

    // After a successful call: every element of every output view written, no other byte of an
    // output buffer changed, every input unchanged.
    void expect_written(const char* call) const {
        for (auto& t : tensors) {
            if (t->plan.role == Role::input) {
                if (!same_bytes(t->snapshot.data(), t->buffer.get(), t->bytes))
                    broken("%s succeeded but changed input %s (%s)", call, t->name(), first_difference(*t).c_str());
                continue;
            }
            if (t->plan.role == Role::inout) {  // any element of the view may change, nothing else
                if (!t->present || t->null_data) continue;
                std::vector<unsigned char> in_view(t->bytes, 0);
                t->for_each_element([&](std::int64_t at) {
                    for (std::size_t b = 0; b < t->esize; ++b) in_view[static_cast<std::size_t>(at) + b] = 1;
                });
                for (std::size_t b = 0; b < t->bytes; ++b)
                    if (!in_view[b] && t->buffer[b] != t->snapshot[b])
                        broken("%s succeeded but wrote byte %zu of %s's buffer, outside its view", call, b, t->name());
                continue;
            }
            if (!t->present || t->null_data) continue;
            std::vector<unsigned char> in_view(t->bytes, 0);
            t->for_each_element([&](std::int64_t at) {
                bool all_poison = true;
                for (std::size_t b = 0; b < t->esize; ++b) {
                    in_view[static_cast<std::size_t>(at) + b] = 1;
                    all_poison &= t->buffer[static_cast<std::size_t>(at) + b] == poison_of(*t);
                }
                if (all_poison)
                    broken("%s succeeded but left element at byte %lld of output %s unwritten", call, (long long)at,
                           t->name());
            });
            for (std::size_t b = 0; b < t->bytes; ++b)
                if (!in_view[b] && t->buffer[b] != poison_of(*t))
                    broken("%s succeeded but wrote byte %zu of output %s's buffer, outside its view", call, b,
                           t->name());
        }
    }

    // After a successful call on finite inputs: every element of every float output view finite.
    void expect_finite(const char* call) const {
        for (auto& t : tensors) {
            if (!t->is_written() || !t->present || t->null_data) continue;
            if (t->elt != Elt::f16 && t->elt != Elt::bf16 && t->elt != Elt::f32 && t->elt != Elt::f64) continue;
            t->for_each_index([&](const std::int64_t* idx, std::int64_t at) {
                if (!std::isfinite(t->load(idx)))
                    broken("%s succeeded on finite inputs but wrote a non-finite value at byte %lld of %s", call,
                           (long long)at, t->name());
            });
        }
    }

    void describe(std::FILE* f) const {
        for (auto& t : tensors) {
            if (!t->present) {
                std::fprintf(f, "  %-18s absent\n", t->name());
                continue;
            }
            std::fprintf(f, "  %-18s %s %s dtype %d (%s) strides %s buffer %zu B origin %lld", t->name(),
                         t->is_output() ? "out" : t->is_written() ? "i/o" : "in ", t->shape_string().c_str(), t->raw_dtype, elt_name(t->elt),
                         t->strides_string().c_str(), t->bytes, (long long)t->origin);
            if (t->null_data) std::fprintf(f, " NULL-DATA");
            if (t->misalign) std::fprintf(f, " misaligned+%d", t->misalign);
            if (t->altered) std::fprintf(f, " (strides refit)");
            if (api == Api::capi) {
                std::fprintf(f, " offset %lld format %d", (long long)t->offset, t->raw_format);
                if (!t->storage.empty()) {
                    std::fprintf(f, " storage [");
                    for (std::size_t i = 0; i < t->storage.size(); ++i)
                        std::fprintf(f, "%s%lld", i ? ", " : "", (long long)t->storage[i]);
                    std::fprintf(f, "]");
                }
            }
            std::fprintf(f, "\n");
        }
        for (auto& r : rejects) std::fprintf(f, "  must reject: %s\n", r.c_str());
        for (auto& u : unknowns) std::fprintf(f, "  validity unknown: %s\n", u.c_str());
    }

    template <class... Parts>
    static std::string concat(const Parts&... parts) {
        std::string s;
        (append(s, parts), ...);
        return s;
    }

private:
    static unsigned char poison_of(const Tensor& t) { return t.elt == Elt::i32 || t.elt == Elt::i64 ? 0xA5 : 0xFF; }
    static void append(std::string& s, const char* p) { s += p; }
    static void append(std::string& s, const std::string& p) { s += p; }
    template <class T>
    static void append(std::string& s, const T& v) {
        s += std::to_string(v);
    }

    static std::string first_difference(const Tensor& t) {
        for (std::size_t b = 0; b < t.bytes; ++b)
            if (t.snapshot[b] != t.buffer[b])
                return concat("byte ", b, " of ", t.bytes, ": ", int(t.snapshot[b]), " -> ", int(t.buffer[b]));
        return "?";
    }

    // What the memory layout alone decides (independent of any operator's rules).
    void judge_memory(const Tensor& t) {
        if (!t.present) {
            if (!t.plan.optional) reject(t.name(), " is required but absent");
            return;
        }
        for (int d = 0; d < t.rank; ++d)
            if (t.shape[d] < 0) reject(t.name(), " has a negative dimension");
        // Sizes near int64: SPEC lets the library refuse what its int64 size checks cannot hold,
        // even for an empty view (it may compute the extent of every non-empty dimension).
        double extent = 0, product = 1;  // doubles: only compared against 2^40
        for (int d = 0; d < t.rank; ++d) {
            product *= static_cast<double>(std::max<std::int64_t>(t.shape[d], 1));
            if (t.shape[d] > 0)
                extent += static_cast<double>(t.shape[d] - 1) * std::fabs(static_cast<double>(t.strides[d]));
        }
        bool most_negative = false;  // a stride that cannot be negated
        for (int d = 0; d < t.rank; ++d) most_negative |= t.strides[d] == kI64Min;
        if (product > 0x1p40 || extent > 0x1p40 || most_negative)
            unknown(t.name(), ": sizes or extents near int64 (", t.shape_string(), " strides ", t.strides_string(),
                    ")");
        // An optional tensor whose data is never read (a mask) may get away with these.
        auto rule = [&](auto&&... parts) { t.plan.optional ? unknown(parts...) : reject(parts...); };
        if (t.null_data && !t.empty) rule(t.name(), " has elements but a null data pointer");
        if (t.misalign && !t.empty && !t.null_data)
            rule(t.name(), " is not aligned to its element size (misaligned by ", t.misalign, " bytes)");
        if (api == Api::capi) judge_storage(t);
        if (t.is_written() && !t.empty && !t.lying) judge_overlap(t);
        if (t.altered && t.is_written()) unknown(t.name(), " is a broadcast output (strides refit to its buffer)");
    }

    void judge_storage(const Tensor& t) {
        if (t.api != Api::capi) return;
        if (t.rank > 8 || t.storage.size() > 8) return;  // aclCreateTensor refuses (CANN's limit of 8)
        if (t.offset != (t.origin - t.data_at) / static_cast<std::int64_t>(t.esize) && !t.empty && t.storage.empty())
            broken("harness bug: wild offset on a non-empty view without storage");
        if (t.storage.empty()) {
            if (t.empty && t.offset != (t.origin - t.data_at) / static_cast<std::int64_t>(t.esize))
                unknown(t.name(), ": an empty view with a far offset");
            return;
        }
        __int128 numel = 1;
        for (std::int64_t d : t.storage) {
            if (d < 0) return unknown(t.name(), ": storage dims with a negative entry");
            numel *= d;
            if (numel > kI64Max) return unknown(t.name(), ": storage dims whose product overflows int64");
        }
        if (t.empty) return;
        const __int128 first = static_cast<__int128>(t.offset) + t.lo, last = static_cast<__int128>(t.offset) + t.hi;
        if (first < 0 || last >= numel) reject(t.name(), ": the view reaches outside its declared storage");
    }

    // Outputs: exact overlap test on the (small) set of addresses, and whether the strides nest
    // (each, sorted by size, steps past everything the smaller ones reach), the layouts every
    // implementation must take.
    void judge_overlap(const Tensor& t) {
        const double n = t.logical_numel();
        if (n > static_cast<double>(kMaxSpan)) return unknown(t.name(), ": output with more elements than its buffer");
        std::vector<unsigned char> seen(t.bytes + 1, 0);
        bool overlap = false;
        t.for_each_element([&](std::int64_t at) { overlap |= seen[static_cast<std::size_t>(at)]++ != 0; });
        if (overlap) return unknown(t.name(), ": output view overlaps itself");
        std::vector<std::pair<std::int64_t, std::int64_t>> dims;  // |stride|, extent
        for (int d = 0; d < t.rank; ++d)
            if (t.shape[d] > 1) dims.push_back({std::abs(t.strides[d]), t.shape[d]});
        std::sort(dims.begin(), dims.end());
        std::int64_t reach = 0;
        for (auto [s, e] : dims) {
            if (s <= reach) return unknown(t.name(), ": output strides interleave (no nesting order)");
            reach += (e - 1) * s;
        }
    }
};

// ---------------------------------------------------------------------------------------------
// C API helpers.

// The message a failed call must replace: set before each checked call, so a failure that sets no
// message of its own is caught.
inline void arm_error_message() { (void)aclrtGetDevice(nullptr); }

inline void expect_error_message(const char* fn) {
    const char* m = aclGetRecentErrMsg();
    if (m == nullptr) broken("%s failed and aclGetRecentErrMsg() returned NULL", fn);
    const std::string s(m);
    if (s.empty()) broken("%s failed with an empty message", fn);
    if (s.find('\n') != std::string::npos || s.find('\r') != std::string::npos)
        broken("%s failed with a message of more than one line: \"%s\"", fn, m);
    if (s.rfind("aclrtGetDevice:", 0) == 0) broken("%s failed without setting its own message", fn);
    if (s.find(fn) == std::string::npos) broken("%s failed with a message that does not name it: \"%s\"", fn, m);
}

// An aclnn error: documented code and message. 561000 only where memory may genuinely run out.
inline void expect_aclnn_error(const char* fn, aclnnStatus st, bool out_of_memory_possible) {
    if (st != ACLNN_ERR_PARAM_NULLPTR && st != ACLNN_ERR_PARAM_INVALID &&
        !(st == ACLNN_ERR_INNER && out_of_memory_possible))
        broken("%s returned %d, not a documented error for this call (161001, 161002%s): %s", fn, st,
               out_of_memory_possible ? ", 561000" : "", aclGetRecentErrMsg());
    expect_error_message(fn);
}

// An aclnn call that must fail with one of `codes` (0-terminated), message checked.
inline void expect_aclnn_code(const char* fn, aclnnStatus st, std::initializer_list<aclnnStatus> codes,
                              const char* why) {
    for (aclnnStatus c : codes)
        if (st == c) return expect_error_message(fn);
    std::string want;
    for (aclnnStatus c : codes) want += (want.empty() ? "" : " or ") + std::to_string(c);
    broken("%s returned %d, expected %s (%s); message: %s", fn, st, want.c_str(), why, aclGetRecentErrMsg());
}

inline void expect_acl_code(const char* fn, aclError st, aclError want, const char* why) {
    if (st != want) broken("%s returned %d, expected %d (%s); message: %s", fn, st, want, why, aclGetRecentErrMsg());
    if (want != ACL_SUCCESS) expect_error_message(fn);
}

// An aclTensor over a harness tensor. The getters must hand back what was given.
struct AclTensor {
    aclTensor* handle = nullptr;
    AclTensor() = default;
    AclTensor(const AclTensor&) = delete;
    AclTensor& operator=(const AclTensor&) = delete;
    ~AclTensor() { reset(); }
    void reset() {
        if (handle && aclDestroyTensor(handle) != ACLNN_SUCCESS) broken("aclDestroyTensor failed on a live tensor");
        handle = nullptr;
    }
};

inline void check_getters(const Tensor& t, const aclTensor* h) {
    std::int64_t* values = nullptr;
    std::uint64_t count = 0;
    auto expect_array = [&](const char* fn, aclnnStatus st, const std::int64_t* want, std::size_t n) {
        if (st != ACLNN_SUCCESS) broken("%s failed on a live tensor: %s", fn, aclGetRecentErrMsg());
        if (count != n || (n && std::memcmp(values, want, n * sizeof(std::int64_t)) != 0))
            broken("%s of %s does not return what aclCreateTensor was given", fn, t.name());
        delete[] values;
        values = nullptr;
    };
    expect_array("aclGetViewShape", aclGetViewShape(h, &values, &count), t.shape, static_cast<std::size_t>(t.rank));
    expect_array("aclGetViewStrides", aclGetViewStrides(h, &values, &count), t.strides,
                 static_cast<std::size_t>(t.rank));
    expect_array("aclGetStorageShape", aclGetStorageShape(h, &values, &count), t.storage.data(), t.storage.size());
    std::int64_t offset = 0;
    if (aclGetViewOffset(h, &offset) != ACLNN_SUCCESS || offset != t.offset)
        broken("aclGetViewOffset of %s: %lld, given %lld", t.name(), (long long)offset, (long long)t.offset);
    aclDataType dt;
    aclFormat fmt;
    if (aclGetDataType(h, &dt) != ACLNN_SUCCESS || raw_int(dt) != t.raw_dtype)
        broken("aclGetDataType of %s does not return the dtype given (%d)", t.name(), t.raw_dtype);
    if (aclGetFormat(h, &fmt) != ACLNN_SUCCESS || raw_int(fmt) != t.raw_format)
        broken("aclGetFormat of %s does not return the format given (%d)", t.name(), t.raw_format);
    arm_error_message();
    expect_aclnn_code("aclGetViewShape", aclGetViewShape(h, nullptr, &count), {ACLNN_ERR_PARAM_NULLPTR},
                      "null viewDims");
}

// Creates the handle (null for an absent tensor). aclCreateTensor may refuse only what breaks its
// own limits (more than 8 dims, dense strides that overflow); a refusal makes the tensor absent.
inline void create_acl_tensor(Case& c, Tensor& t, AclTensor& out) {
    out.reset();
    if (!t.present) return;
    arm_error_message();
    out.handle = aclCreateTensor(t.shape, static_cast<std::uint64_t>(t.rank), as_enum<aclDataType>(t.raw_dtype),
                                 t.pass_null_strides ? nullptr : t.strides, t.offset, as_enum<aclFormat>(t.raw_format),
                                 t.storage.empty() ? nullptr : t.storage.data(), t.storage.size(), t.data_pointer());
    const bool may_refuse = t.rank > 8 || t.storage.size() > 8;
    if (out.handle == nullptr) {
        expect_error_message("aclCreateTensor");
        if (!may_refuse) broken("aclCreateTensor refused %s: %s", t.name(), aclGetRecentErrMsg());
        t.present = false;
        if (!t.plan.optional) c.reject(t.name(), ": aclCreateTensor refused it, the operator gets NULL");
        else c.forget(t.name());  // an absent optional tensor: what its memory broke no longer counts
        return;
    }
    if (t.rank > 8 || t.storage.size() > 8) c.unknown(t.name(), ": aclCreateTensor accepted more than 8 dims");
    check_getters(t, out.handle);
}

// The aclTensor handles of every tensor of a case, in order.
struct AclHandles {
    const Case* c = nullptr;
    std::vector<std::unique_ptr<AclTensor>> h;
    void create(Case& cs) {
        c = &cs;
        for (auto& t : cs.tensors) {
            h.push_back(std::make_unique<AclTensor>());
            create_acl_tensor(cs, *t, *h.back());
        }
    }
    const aclTensor* of(const Tensor* t) const {
        for (std::size_t i = 0; i < c->tensors.size(); ++i)
            if (c->tensors[i].get() == t) return h[i]->handle;
        return nullptr;
    }
    aclTensor* mut(const Tensor* t) const { return const_cast<aclTensor*>(of(t)); }  // CANN's non-const outputs
    void reset() {
        for (auto& x : h) x->reset();
    }
};

// An int64 array argument (the sequence lengths) as a C caller builds it: absent, NULL values
// with a size (which aclCreateIntArray must refuse, so the operator gets NULL), or values.
struct IntArray {
    aclIntArray* handle = nullptr;
    IntArray() = default;
    IntArray(const IntArray&) = delete;
    IntArray& operator=(const IntArray&) = delete;
    ~IntArray() { aclDestroyIntArray(handle); }
};

inline void create_int_array(bool given, bool null_pointer, const std::vector<std::int64_t>& values, IntArray& out) {
    if (!given) return;
    arm_error_message();
    out.handle = aclCreateIntArray(null_pointer ? nullptr : values.data(), values.size());
    if (null_pointer && !values.empty()) {
        if (out.handle != nullptr) broken("aclCreateIntArray accepted NULL values with size %zu", values.size());
        expect_error_message("aclCreateIntArray");
        return;
    }
    if (out.handle == nullptr) broken("aclCreateIntArray refused %zu values: %s", values.size(), aclGetRecentErrMsg());
    std::uint64_t n = 0;
    if (aclGetIntArraySize(out.handle, &n) != ACLNN_SUCCESS || n != values.size())
        broken("aclGetIntArraySize does not return the size given (%zu)", values.size());
}

// ---------------------------------------------------------------------------------------------
// Native API helpers.

inline opennsa::TensorView native_view(const Tensor& t) {
    opennsa::TensorView v;
    if (!t.present) return v;
    v.data = t.origin_pointer();
    const int raw = t.raw_dtype;
    std::memcpy(&v.dtype, &raw, sizeof raw);  // DType has a fixed underlying type: any int is a value
    v.rank = t.rank;
    for (int d = 0; d < std::min(t.rank, opennsa::kMaxRank); ++d) {
        v.shape[d] = t.shape[d];
        v.strides[d] = t.strides[d];
    }
    return v;
}

struct NativeOutcome {
    bool ok = true;
    opennsa::ErrorCode code = opennsa::ErrorCode::internal;
    std::string what;
};

// Runs a native call; an error must be an opennsa::Error with a one-line message and a
// documented code (internal only where memory may genuinely run out).
template <class Fn>
NativeOutcome call_native(const char* fn, bool out_of_memory_possible, Fn&& body) {
    NativeOutcome r;
    try {
        body();
        return r;
    } catch (const opennsa::Error& e) {
        r.ok = false;
        r.code = e.code();
        r.what = e.what();
    } catch (const std::exception& e) {
        broken("%s threw a std::exception that is not opennsa::Error: %s", fn, e.what());
    } catch (...) {
        broken("%s threw something that is not an exception", fn);
    }
    if (r.what.empty()) broken("%s threw opennsa::Error with an empty message", fn);
    if (r.what.find('\n') != std::string::npos)
        broken("%s threw a message of more than one line: %s", fn, r.what.c_str());
    const bool documented = r.code == opennsa::ErrorCode::null_pointer ||
                            r.code == opennsa::ErrorCode::invalid_argument ||
                            (r.code == opennsa::ErrorCode::internal && out_of_memory_possible);
    if (!documented) broken("%s threw error code %d: %s", fn, static_cast<int>(r.code), r.what.c_str());
    return r;
}

// ---------------------------------------------------------------------------------------------
// Workspaces the harness owns: exactly the bytes handed out, inside poisoned guard bands so a
// write past either end is seen even where ASan's redzones would not be (misaligned starts).

class GuardedBlock {
public:
    static constexpr std::size_t kGuard = 64;
    GuardedBlock(std::size_t size, std::size_t shift, Rng& rng) : size_(size), shift_(shift) {
        const std::size_t total = kGuard + shift + size + kGuard;
        raw_.reset(static_cast<unsigned char*>(std::aligned_alloc(64, (total + 63) / 64 * 64)));
        total_ = total;
        for (std::size_t i = 0; i < total_; ++i) raw_.get()[i] = static_cast<unsigned char>(rng.next());
        snapshot_.assign(raw_.get(), raw_.get() + total_);
    }
    unsigned char* data() const { return raw_.get() + kGuard + shift_; }
    std::size_t size() const { return size_; }
    // The bytes outside [data, data + size) are as they were.
    void expect_guards(const char* call) const {
        for (std::size_t i = 0; i < total_; ++i) {
            const bool inside = i >= kGuard + shift_ && i < kGuard + shift_ + size_;
            if (!inside && raw_.get()[i] != snapshot_[i])
                broken("%s wrote byte %lld relative to the workspace it was given (size %zu)", call,
                       static_cast<long long>(i) - static_cast<long long>(kGuard + shift_), size_);
        }
    }
    // No byte at all changed (a workspace the call must not have used).
    void expect_unused(const char* call) const {
        if (std::memcmp(raw_.get(), snapshot_.data(), total_) != 0)
            broken("%s wrote into a workspace it was not allowed to use", call);
    }
    void repoison(Rng& rng) {
        for (std::size_t i = kGuard + shift_; i < kGuard + shift_ + size_; ++i)
            raw_.get()[i] = static_cast<unsigned char>(rng.next());
        snapshot_.assign(raw_.get(), raw_.get() + total_);
    }

private:
    struct Free {
        void operator()(unsigned char* p) const { std::free(p); }
    };
    std::unique_ptr<unsigned char, Free> raw_;
    std::size_t size_, shift_, total_ = 0;
    std::vector<unsigned char> snapshot_;
};

// ---------------------------------------------------------------------------------------------
// Two-phase C operators (GetWorkspaceSize, then launch): the launch options a case decides, and
// the driver that checks both phases. An operator harness supplies the two entry points and what
// it knows about the call once phase one accepted it.

struct LaunchChoice {
    std::int64_t workspace = 0;  // 0-9 exact, 10 larger, 11 smaller, 12 size 0, 13 null, 14 misaligned, 15 exact
    std::int64_t workspace_extra = 0;
    std::int64_t stream = 0;   // 0-4 default (null), 5 a live stream, 6 a destroyed one, 7 a pointer that is no stream
    bool wrong_entry = false;  // launch through the other operator's entry point
    bool repeatable = false;   // aclSetAclOpExecutorRepeatable, launch twice, results bitwise equal
    bool destroy_tensors_early = false;  // destroy the aclTensors right after phase one
    std::int64_t threads = 1;
};

inline LaunchChoice decide_launch(Input& in) {
    Scope s(in, "launch");
    LaunchChoice c;
    c.workspace = in.integer("workspace", 0, 15);
    if (c.workspace == 10 || c.workspace == 11 || c.workspace == 14) c.workspace_extra = in.integer("extra", 1, 4096);
    c.stream = in.integer("stream", 0, 7);
    c.wrong_entry = in.chance("wrong_entry", 16);
    c.repeatable = in.chance("repeatable", 4);
    c.destroy_tensors_early = in.chance("destroy_tensors_early", 2);
    c.threads = 1 + in.integer("threads", 0, 2);
    return c;
}

// What the operator harness knows once phase one accepted the call.
struct LaunchFacts {
    bool data_valid = true;      // the contents the launch checks (topk indices) obey the rules
    std::string data_problem;    // why not
    bool data_unknown = false;   // the harness cannot tell: success or 161002 with nothing written
    double work = 0;             // multiply-adds a sensible implementation does
    double workspace_bound = 0;  // bytes of workspace no sensible implementation exceeds
};

struct TwoPhaseOp {
    const char* prepare_name;
    const char* launch_name;
    const char* other_launch_name;
    std::function<aclnnStatus(std::uint64_t*, aclOpExecutor**)> prepare;
    aclnnStatus (*launch)(void*, std::uint64_t, aclOpExecutor*, aclrtStream);
    aclnnStatus (*other_launch)(void*, std::uint64_t, aclOpExecutor*, aclrtStream);
    std::function<LaunchFacts()> facts;
    std::function<void()> destroy_tensors;  // releases the aclTensor handles (after phase one)
    std::function<void(const char*)> after_success;  // optional: the operator's own checks of a success
};

// A stream in the state the choice asks for; destroyed (if live) when this goes.
class StreamChoice {
public:
    explicit StreamChoice(std::int64_t mode) : mode_(mode) {
        if (mode == 5 || mode == 6) {
            if (aclrtCreateStream(&stream_) != ACL_SUCCESS)
                broken("aclrtCreateStream failed: %s", aclGetRecentErrMsg());
            if (mode == 6 && aclrtDestroyStream(stream_) != ACL_SUCCESS) broken("aclrtDestroyStream failed");
        }
        if (mode == 7) stream_ = &not_a_stream_;
    }
    ~StreamChoice() {
        if (mode_ == 5 && aclrtDestroyStream(stream_) != ACL_SUCCESS)
            broken("aclrtDestroyStream of a live stream failed");
    }
    aclrtStream get() const { return stream_; }
    bool live() const { return mode_ <= 5; }

private:
    std::int64_t mode_;
    aclrtStream stream_ = nullptr;
    int not_a_stream_ = 0;
};

// A non-repeatable executor is spent by its launch whatever the outcome (CANN's rule): afterwards
// it must not be live. A repeatable one is live until destroyed.
inline void expect_consumed(aclOpExecutor* ex, const char* how) {
    arm_error_message();
    const aclnnStatus st = aclDestroyAclOpExecutor(ex);
    if (st == ACLNN_SUCCESS)
        broken("the executor was still live after %s (a launch must consume a non-repeatable executor)", how);
    expect_aclnn_code("aclDestroyAclOpExecutor", st, {ACLNN_ERR_PARAM_INVALID}, "executor already consumed");
}

inline void drive_two_phase(Case& c, const TwoPhaseOp& op, const LaunchChoice& choice, Rng& rng) {
    opennsa::set_num_threads(static_cast<int>(choice.threads));
    c.arm();
    std::uint64_t ws = 0;
    aclOpExecutor* ex = nullptr;
    arm_error_message();
    const aclnnStatus st = op.prepare(&ws, &ex);
    FUZZ_LOG("%s: %d %s (workspace %llu)\n", op.prepare_name, st, st ? aclGetRecentErrMsg() : "",
             static_cast<unsigned long long>(ws));
    if (verbose() && g_describe) g_describe(stderr);
    if (st != ACLNN_SUCCESS) {
        expect_aclnn_error(op.prepare_name, st, false);
        c.expect_untouched(op.prepare_name);
        if (c.clean()) broken("%s rejected a valid call: %s", op.prepare_name, aclGetRecentErrMsg());
        return;
    }
    if (c.must_reject()) broken("%s accepted a call it must reject: %s", op.prepare_name, c.rejects.front().c_str());
    if (ex == nullptr) broken("%s succeeded but returned a null executor", op.prepare_name);
    c.expect_untouched(op.prepare_name);  // phase one reads and writes no tensor data
    if (choice.destroy_tensors_early) op.destroy_tensors();

    const LaunchFacts facts = op.facts();
    if (static_cast<double>(ws) > facts.workspace_bound)
        broken("%s asks for %llu bytes of workspace; no more than %.0f are needed for this problem", op.prepare_name,
               static_cast<unsigned long long>(ws), facts.workspace_bound);
    // Real work the harness will not hand over: launch only in ways that must fail early.
    const bool runnable = ws <= kMaxWorkspace && facts.work <= kMaxWork && c.output_elements() <= kMaxOutputElements;
    LaunchChoice ch = choice;
    if (!runnable) {
        ch.repeatable = false;
        if (ws > 0) {
            ch.workspace = 11;
            ch.workspace_extra = static_cast<std::int64_t>(std::max<std::uint64_t>(1, ws > 4096 ? ws - 4096 : ws / 2));
        } else {
            ch.stream = 6;
        }
    }
    if (ch.repeatable) {
        arm_error_message();
        if (aclSetAclOpExecutorRepeatable(ex) != ACLNN_SUCCESS)
            broken("aclSetAclOpExecutorRepeatable failed on a live executor: %s", aclGetRecentErrMsg());
    }

    // The workspace and what the launch is told about it.
    std::uint64_t given_size = ws;
    std::size_t block_size = static_cast<std::size_t>(std::min<std::uint64_t>(ws, kMaxWorkspace));
    std::size_t shift = 0;
    bool null_ws = false;
    switch (ch.workspace) {
        case 10:
            block_size += static_cast<std::size_t>(ch.workspace_extra);
            given_size = block_size;
            break;
        case 11:
            given_size = ws - std::min<std::uint64_t>(ws, static_cast<std::uint64_t>(ch.workspace_extra));
            block_size = static_cast<std::size_t>(std::min<std::uint64_t>(given_size, kMaxWorkspace));
            given_size = block_size;
            break;
        case 12: given_size = 0; break;
        case 13: null_ws = true; break;
        case 14: shift = static_cast<std::size_t>(ch.workspace_extra % 63 + 1); break;
        default: break;
    }
    GuardedBlock block(block_size, shift, rng);
    void* ws_ptr = null_ws || (block_size == 0 && ch.workspace != 14) ? nullptr : block.data();
    StreamChoice stream(ch.stream);

    // What must make this launch fail.
    std::vector<aclnnStatus> codes;
    std::string why;
    auto fails = [&](aclnnStatus code, const char* reason) {
        codes.push_back(code);
        why += (why.empty() ? "" : "; ") + std::string(reason);
    };
    if (ch.wrong_entry) fails(ACLNN_ERR_PARAM_INVALID, "executor made for the other operator");
    if (!stream.live()) fails(ACLNN_ERR_PARAM_INVALID, "stream not live");
    if (given_size < ws) fails(ACLNN_ERR_PARAM_INVALID, "workspace smaller than asked");
    if (ws > 0 && ws_ptr == nullptr) fails(ACLNN_ERR_PARAM_NULLPTR, "null workspace");
    if (ws > 0 && ws_ptr != nullptr && reinterpret_cast<std::uintptr_t>(ws_ptr) % 64 != 0)
        fails(ACLNN_ERR_PARAM_INVALID, "workspace not 64-byte aligned");
    const char* entry_name = ch.wrong_entry ? op.other_launch_name : op.launch_name;
    auto entry = ch.wrong_entry ? op.other_launch : op.launch;

    // Contents the harness cannot judge: either outcome, each checked as such.
    const bool either = codes.empty() && facts.data_unknown;
    arm_error_message();
    const aclnnStatus rs = entry(ws_ptr, given_size, ex, stream.get());
    if (either && rs != ACLNN_SUCCESS) {
        expect_aclnn_code(entry_name, rs, {ACLNN_ERR_PARAM_INVALID}, "launch-time contents the harness cannot judge");
        c.expect_untouched(entry_name);
        block.expect_guards(entry_name);
        if (ch.repeatable) {  // the same contents must be rejected again
            c.arm();
            arm_error_message();
            expect_aclnn_code(op.launch_name, op.launch(ws_ptr, given_size, ex, stream.get()),
                              {ACLNN_ERR_PARAM_INVALID}, "rejected once, the same launch again");
            c.expect_untouched(op.launch_name);
            arm_error_message();
            if (aclDestroyAclOpExecutor(ex) != ACLNN_SUCCESS)
                broken("aclDestroyAclOpExecutor failed on a live repeatable executor: %s", aclGetRecentErrMsg());
            return;
        }
        return expect_consumed(ex, "its launch");
    }
    FUZZ_LOG("%s: %d %s (expected %s)\n", entry_name, rs, rs ? aclGetRecentErrMsg() : "",
             codes.empty() && facts.data_valid ? "success" : (why.empty() ? facts.data_problem.c_str() : why.c_str()));
    if (!codes.empty() || (!facts.data_valid && !either)) {
        if (codes.empty()) codes.push_back(ACLNN_ERR_PARAM_INVALID), why = facts.data_problem;
        if (rs == ACLNN_SUCCESS) broken("%s succeeded but must fail: %s", entry_name, why.c_str());
        std::vector<aclnnStatus> accepted = codes;
        bool listed = false;
        for (aclnnStatus code : accepted) listed |= code == rs;
        if (!listed)
            broken("%s returned %d; expected %d (%s): %s", entry_name, rs, accepted.front(), why.c_str(),
                   aclGetRecentErrMsg());
        expect_error_message(entry_name);
        c.expect_untouched(entry_name);
        block.expect_guards(entry_name);
    } else {
        if (rs != ACLNN_SUCCESS) broken("%s failed on a valid launch: %d %s", entry_name, rs, aclGetRecentErrMsg());
        c.expect_written(entry_name);
        block.expect_guards(entry_name);
        if (op.after_success) op.after_success(entry_name);
    }
    if (!ch.repeatable) return expect_consumed(ex, "its launch");

    // Repeatable: still live. Launch again with a proper workspace (fresh garbage in it) and the
    // default stream; a second success must give the same bits.
    std::vector<std::vector<unsigned char>> first;
    for (auto& t : c.tensors) first.emplace_back(t->buffer.get(), t->buffer.get() + t->bytes);
    const bool first_ok = rs == ACLNN_SUCCESS;
    c.arm();
    GuardedBlock again(static_cast<std::size_t>(ws), 0, rng);
    arm_error_message();
    const aclnnStatus rs2 = op.launch(ws ? again.data() : nullptr, ws, ex, nullptr);
    // Contents the harness cannot judge: the second launch may be refused too, unless the first
    // (on a proper launch) succeeded.
    const bool refused_again = facts.data_unknown && !first_ok && rs2 != ACLNN_SUCCESS;
    if (refused_again) {
        expect_aclnn_code(op.launch_name, rs2, {ACLNN_ERR_PARAM_INVALID}, "launch-time contents the harness cannot judge");
        c.expect_untouched(op.launch_name);
    } else if (facts.data_valid || facts.data_unknown) {
        if (rs2 != ACLNN_SUCCESS)
            broken("%s failed when a repeatable executor was launched again: %d %s", op.launch_name, rs2,
                   aclGetRecentErrMsg());
        c.expect_written(op.launch_name);
        if (first_ok)
            for (std::size_t i = 0; i < c.tensors.size(); ++i)
                if (!same_bytes(first[i].data(), c.tensors[i]->buffer.get(), c.tensors[i]->bytes))
                    broken("a repeatable executor's second launch gave different bits in %s", c.tensors[i]->name());
    } else {
        if (rs2 == ACLNN_SUCCESS)
            broken("%s succeeded on its second launch but must fail: %s", op.launch_name, facts.data_problem.c_str());
        expect_aclnn_code(op.launch_name, rs2, {ACLNN_ERR_PARAM_INVALID}, facts.data_problem.c_str());
        c.expect_untouched(op.launch_name);
    }
    again.expect_guards(op.launch_name);
    arm_error_message();
    if (aclDestroyAclOpExecutor(ex) != ACLNN_SUCCESS)
        broken("aclDestroyAclOpExecutor failed on a live repeatable executor: %s", aclGetRecentErrMsg());
}

// One-time process setup for the C API targets.
inline void init_acl() {
    static bool done = [] {
        if (aclInit(nullptr) != ACL_SUCCESS) broken("aclInit failed: %s", aclGetRecentErrMsg());
        if (aclrtSetDevice(0) != ACL_SUCCESS) broken("aclrtSetDevice(0) failed: %s", aclGetRecentErrMsg());
        return true;
    }();
    (void)done;
}

}  // namespace fuzz
