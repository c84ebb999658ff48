// The oracle: docs/spec/decoding.md section 2.3 as plain loops in float64 (attention over the
// visible prefix of the paged compressed cache, importance scores, forced blocks, ranking). Slow
// on purpose; every other path is tested against it. Results are dense row-major arrays over the
// query tensor's rows (TND: T rows; BSND: B * Q rows, row b * Q + s); rows that are not computed
// (BSND s >= Q_b) hold out 0 and topk -1.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/compress_attention_infer/problem.hpp"

namespace opennsa::detail::compress_attention_infer::reference {

struct Result {
    std::vector<double> out;          // [rows][N1][Dv]
    std::vector<std::int64_t> ns;     // NS_b per batch (the oracle's own count)
    std::int64_t max_ns = 0;
    std::vector<double> score;        // [rows][N2][max_ns]: block scores before forcing, 0 past NS_b
    std::vector<std::int32_t> topk;   // [rows][N2][k]
};

// Reads p.q, p.key, p.value through the block table (any float dtype, any strides).
Result forward(const Problem& p);

// The flat row of query token s of batch b.
std::int64_t flat_row(const Problem& p, std::int64_t b, std::int64_t s);

}  // namespace opennsa::detail::compress_attention_infer::reference
