// PyTorch operator of the decoding compression: opennsa::compress_infer.cache, a CPU kernel over
// the native API that updates `cache` in place. The arguments are torch_npu's
// npu_nsa_compress_infer.cache with its mutation annotation (Tensor(a!) cache), so
// functionalization and torch.compile see the write; the operator returns nothing (torch_npu's
// returns the cache as Tensor(a!)): PyTorch cannot functionalize a custom operator whose output
// aliases an input, so opcheck and torch.compile would reject it. The Python function
// npu_nsa_compress_infer returns the cache object itself, as torch_npu's does.
// block_table and actual_seq_len are required (the input is always paged), despite the "?" of the
// schema. Not differentiable: a decoding step has no backward. Fake kernel:
// opennsa/_compress_with_cache.py.
#include "common.hpp"

using namespace opennsa_torch;

namespace {

void compress_infer_cpu(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& slot_mapping,
                        int64_t compress_block_size, int64_t compress_stride, int64_t page_block_size,
                        const Optional<at::Tensor>& block_table, at::OptionalIntArrayRef actual_seq_len,
                        at::Tensor& cache) {
    TORCH_CHECK_VALUE(block_table.has_value() && block_table->defined(),
                      "opennsa: npu_nsa_compress_infer: block_table is required (the page table of input, int32 "
                      "[B, maxBlocks])");
    TORCH_CHECK_VALUE(actual_seq_len.has_value(),
                      "opennsa: npu_nsa_compress_infer: actual_seq_len is required (each sequence's length after "
                      "appending the newest token)");
    opennsa::CompressWithCacheParams p;
    p.block_size = compress_block_size;
    p.stride = compress_stride;
    p.page_size = page_block_size;
    p.seq_lens = *to_vector(actual_seq_len);
    opennsa::CompressWithCacheArgs a;
    a.input = view_of(input, "input");
    a.weight = view_of(weight, "weight");
    a.slot_mapping = view_of(slot_mapping, "slotMapping");
    a.block_table = view_of(*block_table, "blockTableOptional");
    a.output_cache = view_of(cache, "outputCache");
    call_library([&] { opennsa::compress_with_cache(a, p); });
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(opennsa, m) {
    m.def(
        "compress_infer.cache(Tensor input, Tensor weight, Tensor slot_mapping, int compress_block_size, "
        "int compress_stride, int page_block_size, *, Tensor? block_table=None, int[]? actual_seq_len=None, "
        "Tensor(a!) cache) -> ()");
}

TORCH_LIBRARY_IMPL(opennsa, CPU, m) { m.impl("compress_infer.cache", &compress_infer_cpu); }
