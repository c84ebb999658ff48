// Packing rows of a 3-D view (any strides, any float dtype) into dense per-head rows of the
// accumulation type: out[n][t][d]. Done once per call and shared by every task.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/rows.hpp"
#include "core/threading.hpp"

namespace opennsa::detail {

template <class S>
void pack_heads(const TensorView& src, std::int64_t T, std::int64_t N, std::int64_t D, Accum<S>* out,
                int threads) {
    constexpr std::int64_t kRows = 256;
    const std::int64_t chunks = (T + kRows - 1) / kRows;
    parallel_for(chunks * N, threads, [&](std::int64_t task, int) {
        const std::int64_t n = task % N;
        const std::int64_t t0 = (task / N) * kRows;
        for (std::int64_t t = t0; t < std::min(t0 + kRows, T); ++t) load_row<S>(src, t, n, out + (n * T + t) * D, D);
    });
}

}  // namespace opennsa::detail
