// OpenNSA native C++ API: the decoding compression (docs/spec/decoding.md section 1; CANN:
// aclnnNsaCompressWithCache; torch_npu: npu_nsa_compress_infer). Each sequence that has just
// completed a compression window has that window compressed into one row of a cache:
//
//   batch b is triggered iff L_b >= l and (L_b - l) % d == 0; then for every head h, element e
//   outputCache[slotMapping[b], h, e] = sum_{r < l} weight[r, h] * K(b, L_b - l + r, h, e)
//
// where K(b, p, ...) is raw token p of batch b in the paged input, read through the block table.
// Every other row of outputCache keeps its bytes. Not differentiable (a decoding step).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "opennsa/compress.hpp"  // kSeqLenPerBatch
#include "opennsa/core.hpp"

namespace opennsa {

struct CompressWithCacheParams {
    std::int64_t block_size = 32;  // l, compressBlockSize: tokens per window
    std::int64_t stride = 16;      // d, compressStride: 1 <= d <= l
    std::int64_t page_size = 128;  // P, pageBlockSize: must equal input.shape[1]
    // actSeqLenOptional: L_b, the length of each sequence after appending the newest token
    // (required; B entries, each >= 0).
    std::vector<std::int64_t> seq_lens;
    std::int64_t seq_len_type = kSeqLenPerBatch;  // actSeqLenType: 1 is the only value accepted
};

// input [numBlocks, P, N, D] (the paged raw K or V cache), weight [l, N] and outputCache [R, N, D]
// share one dtype: f16, bf16, f32 (or f64, for checks). slotMapping [B] and blockTable
// [B, maxBlocks] are int32. outputCache is read and written in place.
struct CompressWithCacheArgs {
    TensorView input, weight, slot_mapping, block_table;
    TensorView output_cache;  // in / out
};

// Whether a sequence of `length` tokens has just completed a window (it writes its slot).
constexpr bool compress_with_cache_triggered(std::int64_t length, std::int64_t l, std::int64_t d) noexcept {
    return d >= 1 && length >= l && (length - l) % d == 0;
}

// Validates everything, slot and block-table values included, before anything is written.
OPENNSA_API void compress_with_cache(const CompressWithCacheArgs& args, const CompressWithCacheParams& params);

// The workspace (always 0 today: the operator needs none) after validating the arguments'
// shapes, dtypes and attributes; slot and block-table values are checked by the call itself.
OPENNSA_API std::size_t compress_with_cache_workspace_bytes(const CompressWithCacheArgs& args,
                                                            const CompressWithCacheParams& params);
OPENNSA_API void compress_with_cache(const CompressWithCacheArgs& args, const CompressWithCacheParams& params,
                                     std::span<std::byte> workspace);

}  // namespace opennsa
