// The oracle: docs/spec/compress.md sections 1.3 and 2.3 written as plain loops in float64, the
// backward in the scatter form the spec states (every window adds into the rows it covers). Slow
// on purpose; every other path is tested against it. Results are dense row-major float64 arrays.
#pragma once

#include <vector>

#include "ops/compress/problem.hpp"

namespace opennsa::detail::compress::reference {

// Reads p.input, p.weight (any float dtype, any strides). Returns output [Tc][N][D].
std::vector<double> forward(const Problem& p);

struct BackwardResult {
    std::vector<double> input_grad;   // [T][N][D]; rows no window covers are 0
    std::vector<double> weight_grad;  // [l][N]
};

// Reads p.output_grad, p.input, p.weight.
BackwardResult backward(const Problem& p);

}  // namespace opennsa::detail::compress::reference
