#include "kernels/avx2/kernels.hpp"

#if defined(__x86_64__)
#include "kernels/avx2/core.hpp"

namespace opennsa::detail::avx2 {

void gemm(std::int64_t M, std::int64_t N, std::int64_t K, const float* a, std::int64_t lda, const float* b,
          std::int64_t ldb, float* c, std::int64_t ldc, bool accumulate) {
    gemm_tiles(M, N, K, StridedA{a, lda, 1}, StridedB{b, ldb}, StridedC{c, ldc}, accumulate);
}

void widen(DType dtype, const void* in, float* out, std::int64_t n) {
    with_float_storage(dtype, [&](auto* tag) {
        using S = std::remove_pointer_t<decltype(tag)>;
        load_row_f32<S>(TensorView::contiguous(in, dtype, {1, 1, n}), 0, 0, out, n);
    });
}

void narrow(DType dtype, const float* in, void* out, std::int64_t n) {
    with_float_storage(dtype, [&](auto* tag) {
        using S = std::remove_pointer_t<decltype(tag)>;
        store_row_f32<S>(TensorView::contiguous(out, dtype, {1, 1, n}), 0, 0, in, 1.0f, n);
    });
}

NSA_AVX2 void exp(const float* in, float* out, std::int64_t n) {
    std::int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) _mm256_storeu_ps(out + i, exp_ps(_mm256_loadu_ps(in + i)));
    if (i < n) {
        float tail[kLanes] = {};
        std::copy(in + i, in + n, tail);
        _mm256_storeu_ps(tail, exp_ps(_mm256_loadu_ps(tail)));
        std::copy(tail, tail + (n - i), out + i);
    }
}

}  // namespace opennsa::detail::avx2

#endif  // __x86_64__
