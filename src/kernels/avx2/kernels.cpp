#include "kernels/avx2/kernels.hpp"

#if defined(__x86_64__)
#include "kernels/avx2/core.hpp"

namespace opennsa::detail::avx2 {

void gemm(std::int64_t M, std::int64_t N, std::int64_t K, const float* a, std::int64_t lda, const float* b,
          std::int64_t ldb, float* c, std::int64_t ldc, bool accumulate) {
    gemm_tiles(M, N, K, StridedA{a, lda, 1}, StridedB{b, ldb}, StridedC{c, ldc}, accumulate);
}

void gemm_bf16(std::int64_t M, std::int64_t N, std::int64_t K, const float* a, std::int64_t lda, const float* b,
               std::int64_t ldb, float* c, std::int64_t ldc, float* dot) {
    // The operators' packing: A rows paired, B transposed to a panel [K even][N], then paired.
    const std::int64_t K2 = (K + 1) / 2;
    std::vector<std::uint32_t> apairs(static_cast<std::size_t>(std::max<std::int64_t>(1, M * K2)));
    for (std::int64_t i = 0; i < M; ++i) pair_row(a + i * lda, K, apairs.data() + i * K2);
    std::vector<float> panel(static_cast<std::size_t>(std::max<std::int64_t>(1, 2 * K2 * N)), 0.0f);
    for (std::int64_t k = 0; k < K; ++k) std::copy(b + k * ldb, b + k * ldb + N, panel.data() + k * N);
    std::vector<std::uint32_t> bpairs(static_cast<std::size_t>(std::max<std::int64_t>(1, K2 * N)));
    pair_panel(panel.data(), K2, N, bpairs.data());
    gemm_bf16_tiles(M, N, K2, PairedA{apairs.data(), K2, 1}, PairedB{bpairs.data(), N}, StridedC{c, ldc});
    std::vector<float> col(static_cast<std::size_t>(std::max<std::int64_t>(1, K)));
    for (std::int64_t k = 0; k < K; ++k) col[static_cast<std::size_t>(k)] = b[k * ldb];
    std::vector<std::uint32_t> cpairs(static_cast<std::size_t>(std::max<std::int64_t>(1, K2)));
    pair_row(col.data(), K, cpairs.data());
    for (std::int64_t i = 0; i < M; ++i) dot[i] = bf16_pair_dot(apairs.data() + i * K2, cpairs.data(), K2);
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
