// Scalar conversions between the storage dtypes and fp32, and typed element access.
// Rounding is to nearest even everywhere; NaN stays NaN. These are the portable definitions the
// SIMD kernels must agree with bit for bit.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>

#include "opennsa/core.hpp"

namespace opennsa::detail {

// Storage tags: fp16 and bf16 are both 16-bit patterns, so they get distinct types.
struct f16_t { std::uint16_t bits; };
struct bf16_t { std::uint16_t bits; };

inline float bf16_to_f32(std::uint16_t h) noexcept {
    return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

inline std::uint16_t f32_to_bf16(float f) noexcept {
    std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even on the 16 dropped bits
    return static_cast<std::uint16_t>(u >> 16);
}

inline float f16_to_f32(std::uint16_t h) noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1fu;
    const std::uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (man << 13));  // inf / NaN
    if (exp == 0) {
        // zero or subnormal: man * 2^-24, exact in fp32
        const float mag = static_cast<float>(man) * 0x1p-24f;
        return std::bit_cast<float>(sign | std::bit_cast<std::uint32_t>(mag));
    }
    return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (man << 13));
}

inline std::uint16_t f32_to_f16(float f) noexcept {
    const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t sign = (x >> 16) & 0x8000u;
    std::uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);  // NaN
    if (ax >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u); // >= 65520 rounds to inf
    if (ax < 0x38800000u) {
        // Result is subnormal (or zero): adding 0.5 puts the f16 subnormal spacing (2^-24) at the
        // fp32 ulp, so the hardware add performs the round-to-nearest-even for us.
        const float v = std::bit_cast<float>(ax) + 0.5f;
        return static_cast<std::uint16_t>(sign | (std::bit_cast<std::uint32_t>(v) - 0x3f000000u));
    }
    const std::uint32_t odd = (ax >> 13) & 1u;
    ax += 0xc8000fffu + odd;  // rebias exponent (127 -> 15) and round to nearest even
    return static_cast<std::uint16_t>(sign | (ax >> 13));
}

// Storage type -> accumulation type: fp32 for fp16/bf16/fp32, fp64 for fp64.
template <class S> struct AccumOf { using type = float; };
template <> struct AccumOf<double> { using type = double; };
template <class S> using Accum = typename AccumOf<S>::type;

// Typed load of one element as its accumulation type, and the one rounding store back.
inline float load_acc(const f16_t* p) noexcept { return f16_to_f32(p->bits); }
inline float load_acc(const bf16_t* p) noexcept { return bf16_to_f32(p->bits); }
inline float load_acc(const float* p) noexcept { return *p; }
inline double load_acc(const double* p) noexcept { return *p; }

inline void store_acc(f16_t* p, float v) noexcept { p->bits = f32_to_f16(v); }
inline void store_acc(bf16_t* p, float v) noexcept { p->bits = f32_to_bf16(v); }
inline void store_acc(float* p, float v) noexcept { *p = v; }
inline void store_acc(double* p, double v) noexcept { *p = v; }

// Calls fn with a null pointer of the storage type of dtype t (a float dtype).
template <class Fn>
decltype(auto) with_storage_type(DType t, Fn&& fn) {
    switch (t) {
        case DType::f16: return fn(static_cast<f16_t*>(nullptr));
        case DType::bf16: return fn(static_cast<bf16_t*>(nullptr));
        case DType::f64: return fn(static_cast<double*>(nullptr));
        default: return fn(static_cast<float*>(nullptr));
    }
}

// Any dtype element as double (the reference reads every input this way).
inline double load_as_double(const void* p, DType t) noexcept {
    switch (t) {
        case DType::f16: return f16_to_f32(*static_cast<const std::uint16_t*>(p));
        case DType::bf16: return bf16_to_f32(*static_cast<const std::uint16_t*>(p));
        case DType::f32: return *static_cast<const float*>(p);
        case DType::f64: return *static_cast<const double*>(p);
        case DType::i32: return *static_cast<const std::int32_t*>(p);
        case DType::i64: return static_cast<double>(*static_cast<const std::int64_t*>(p));
        case DType::u8:
        case DType::boolean: return *static_cast<const std::uint8_t*>(p);
    }
    return 0.0;
}

// Round a float to a storage dtype and write it (the single rounding of an output).
inline void store_from_f32(void* p, DType t, float v) noexcept {
    switch (t) {
        case DType::f16: *static_cast<std::uint16_t*>(p) = f32_to_f16(v); break;
        case DType::bf16: *static_cast<std::uint16_t*>(p) = f32_to_bf16(v); break;
        case DType::f32: *static_cast<float*>(p) = v; break;
        case DType::f64: *static_cast<double*>(p) = v; break;
        default: break;
    }
}

}  // namespace opennsa::detail
