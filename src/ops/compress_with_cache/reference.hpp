// The oracle: docs/spec/decoding.md 1.3 as plain loops in float64, reading every token through
// the block table. Slow on purpose; every other path is tested against it.
#pragma once

#include <vector>

#include "ops/compress_with_cache/problem.hpp"

namespace opennsa::detail::compress_with_cache::reference {

// The rows the call writes, dense [triggered.size()][N][D] in the order of p.triggered (the other
// rows of outputCache keep their contents).
std::vector<double> written_rows(const Problem& p);

}  // namespace opennsa::detail::compress_with_cache::reference
