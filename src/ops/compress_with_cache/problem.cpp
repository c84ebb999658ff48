#include "ops/compress_with_cache/problem.hpp"

#include <algorithm>
#include <utility>

#include "core/checked.hpp"
#include "core/validate.hpp"

namespace opennsa::detail::compress_with_cache {
namespace {

constexpr const char* kInput = "input";
constexpr const char* kTable = "blockTableOptional";
constexpr const char* kLens = "actSeqLenOptional";

void check_attributes(const CompressWithCacheParams& params) {
    const std::int64_t l = params.block_size, d = params.stride;
    if (d < 1) invalid("compressStride = ", d, " must be >= 1");
    if (l < d)
        invalid("compressBlockSize = ", l, " must be >= compressStride = ", d,
                " (windows may overlap but must cover every stride)");
    if (params.seq_len_type != kSeqLenPerBatch)
        invalid("actSeqLenType = ", params.seq_len_type, " is not supported (only 1: per-batch lengths)");
    if (params.page_size < 1) invalid("pageBlockSize = ", params.page_size, " must be >= 1");
}

// input: the paged raw cache, rank 4 only (a rank-3 input would be CANN's documented TND form,
// which CANN does not implement; it is rejected rather than misread).
PagedCache read_input(const Arg& in, std::int64_t page_size) {
    if (in.t->rank != 4)
        invalid(kInput, ": rank ", in.t->rank, " (shape ", shape_string(*in.t),
                ") must be 4 ([numBlocks, pageBlockSize, N, D]; the TND layout is not supported)");
    PagedCache c = paged_cache(in, page_size, in.t->shape[2], in.t->shape[3], "pageBlockSize");
    if (c.heads < 1) invalid(kInput, ".shape[2] = ", c.heads, " (N, the heads) must be >= 1");
    if (c.dim < 1) invalid(kInput, ".shape[3] = ", c.dim, " (D, the head dim) must be >= 1");
    check_extent(in, false);
    return c;
}

}  // namespace

Problem validate(const CompressWithCacheArgs& args, const CompressWithCacheParams& params) {
    const Arg in{kInput, &args.input}, w{"weight", &args.weight}, sm{"slotMapping", &args.slot_mapping},
        bt{kTable, &args.block_table}, oc{"outputCache", &args.output_cache};
    for (const Arg& a : {in, w, sm, bt, oc}) check_present(a);
    Problem p;
    p.dtype = args.input.dtype;
    if (!is_float_dtype(p.dtype))
        invalid(kInput, ": dtype ", dtype_name(p.dtype), " is not supported (expected fp16, bf16, fp32 or fp64)");
    check_dtype(w, p.dtype, " (the dtype of input)");
    check_dtype(oc, p.dtype, " (the dtype of input)");
    check_dtype(sm, DType::i32, " (slot indices are int32)");
    check_attributes(params);
    p.l = params.block_size;
    p.d = params.stride;

    p.input = read_input(in, params.page_size);
    p.N = p.input.heads;
    p.D = p.input.dim;
    check_rank(w, 2, " ([compressBlockSize, N])");
    check_dim(w, 0, p.l, "compressBlockSize");
    check_dim(w, 1, p.N, "N of input");
    check_extent(w, false);
    check_rank(oc, 3, " ([R, N, D]: one row per compressed token)");
    check_dim(oc, 1, p.N, "N of input");
    check_dim(oc, 2, p.D, "D of input");
    check_extent(oc, true);
    p.R = args.output_cache.shape[0];

    check_rank(sm, 1, " ([B]: one slot per batch)");
    check_extent(sm, false);
    p.B = args.slot_mapping.shape[0];
    p.table = block_table(bt, p.B, "B, the entries of slotMapping");
    if (static_cast<std::int64_t>(params.seq_lens.size()) != p.B)
        invalid(kLens, ": ", params.seq_lens.size(), " entries, must have B = ", p.B,
                " (one length per batch, as slotMapping)");
    p.lens = params.seq_lens;
    for (std::int64_t b = 0; b < p.B; ++b) {
        const std::int64_t len = p.lens[static_cast<std::size_t>(b)];
        if (len < 0) invalid(kLens, "[", b, "] = ", len, " is negative (per-batch lengths)");
        // Every batch's tokens have pages, triggered or not: a length past its pages is a
        // server's bookkeeping error, reported before the launch.
        check_block_table_columns(p.table, kTable, b, len, p.input.page_size);
        if (compress_with_cache_triggered(len, p.l, p.d)) p.triggered.push_back(b);
    }
    p.weight = args.weight;
    p.slots = args.slot_mapping;
    p.cache = args.output_cache;
    return p;
}

void check_values(const Problem& p) {
    std::vector<std::pair<std::int64_t, std::int64_t>> taken;  // (slot, batch)
    taken.reserve(p.triggered.size());
    for (std::int64_t b : p.triggered) {
        const std::int64_t s = p.slot(b);
        if (s < 0 || s >= p.R)
            invalid("slotMapping[", b, "] = ", s, " is out of range [0, ", p.R, ") (rows of outputCache) for batch ", b,
                    ", which is triggered (actSeqLenOptional[", b, "] = ", p.lens[static_cast<std::size_t>(b)], ")");
        taken.emplace_back(s, b);
        check_block_table_entries(p.table, kTable, b, p.window_start(b), p.lens[static_cast<std::size_t>(b)], p.input,
                                  kInput);
    }
    std::sort(taken.begin(), taken.end());
    for (std::size_t i = 1; i < taken.size(); ++i)
        if (taken[i].first == taken[i - 1].first)
            invalid("slotMapping[", taken[i].second, "] = ", taken[i].first, " is also the slot of batch ",
                    taken[i - 1].second, "; two triggered batches cannot write one row of outputCache");
}

}  // namespace opennsa::detail::compress_with_cache
