// The one place that knows the decoding compression's rules (docs/spec/decoding.md 1.4): a call's
// tensors and parameters become a validated Problem, or an Error naming the CANN parameter, the
// value seen and the rule. validate() checks what the C API's GetWorkspaceSize can (shapes,
// dtypes, attributes, lengths); check_values() the data a launch depends on (slots, block-table
// entries). Both run before anything is written; nothing downstream re-checks.
#pragma once

#include <cstdint>
#include <vector>

#include "core/paged.hpp"
#include "core/view.hpp"
#include "opennsa/compress_with_cache.hpp"

namespace opennsa::detail::compress_with_cache {

struct Problem {
    DType dtype = DType::f32;  // of input, weight and outputCache
    std::int64_t N = 0, D = 0;  // heads, head dim
    std::int64_t l = 0, d = 0;  // window length and stride
    std::int64_t B = 0;         // batches
    std::int64_t R = 0;         // rows of outputCache
    std::vector<std::int64_t> lens;       // L_b
    std::vector<std::int64_t> triggered;  // the batches that write their slot, ascending

    PagedCache input;  // [numBlocks, P, N, D]
    BlockTable table;
    TensorView weight, slots, cache;

    std::int64_t slot(std::int64_t b) const noexcept {
        return static_cast<const std::int32_t*>(slots.data)[b * slots.strides[0]];
    }
    // Position of the first raw token of batch b's newest window.
    std::int64_t window_start(std::int64_t b) const noexcept { return lens[static_cast<std::size_t>(b)] - l; }
};

Problem validate(const CompressWithCacheArgs& args, const CompressWithCacheParams& params);

// The slots of the triggered batches lie in [0, R) and are pairwise distinct; the block-table
// entries of the pages their windows read name pages of input.
void check_values(const Problem& p);

}  // namespace opennsa::detail::compress_with_cache
