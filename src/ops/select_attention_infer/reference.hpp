// The oracle: docs/spec/decoding.md section 3.3 as plain loops with float64 accumulation, reading
// the paged caches through the block table. Slow on purpose; every other path is tested against
// it.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/select_attention_infer/problem.hpp"

namespace opennsa::detail::select_attention_infer::reference {

// The raw positions token s of batch b sees through kv head n2: one entry per (slot, position),
// duplicates included, in slot order. p's topk values must be valid.
std::vector<std::int64_t> visible_positions(const Problem& p, std::int64_t b, std::int64_t s, std::int64_t n2);

// Index of (b, s) among the output's token rows: b * Q + s (BSND, BSH) or the TND row.
std::int64_t output_row(const Problem& p, std::int64_t b, std::int64_t s);

// Dense [output rows][N1][Dv] float64; rows and heads that see nothing, and rows s >= Q_b, are 0.
std::vector<double> forward(const Problem& p);

}  // namespace opennsa::detail::select_attention_infer::reference
