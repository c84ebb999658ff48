// PyTorch operator of the compress attention infer: opennsa::compress_attention_infer (one decoding
// step: attention over a paged compressed cache plus the top-k block selection), a CPU kernel over
// the native API. Inputs are handed over as they are (no copy whatever their layout); outputs are
// fresh contiguous tensors. The schema is torch_npu's npu_nsa_compress_attention_infer (argument
// order, keyword-only optionals, defaults); not differentiable, so no autograd. The fake kernel is
// registered from Python (opennsa/_compress_attention_infer.py).
#include "common.hpp"

using namespace opennsa_torch;

namespace {

std::tuple<at::Tensor, at::Tensor> compress_attention_infer_cpu(
    const at::Tensor& query, const at::Tensor& key, const at::Tensor& value, double scale_value, int64_t head_num,
    int64_t key_value_head_num, int64_t select_block_size, int64_t select_block_count, int64_t page_block_size,
    int64_t compress_block_size, int64_t compress_stride, c10::string_view layout,
    const Optional<at::Tensor>& atten_mask, const Optional<at::Tensor>& block_table,
    const Optional<at::Tensor>& topk_mask, at::OptionalIntArrayRef actual_seq_qlen,
    at::OptionalIntArrayRef actual_cmp_seq_kvlen, at::OptionalIntArrayRef actual_sel_seq_kvlen) {
    (void)topk_mask;  // reserved, never read
    const std::string lay(layout.data(), layout.size());
    TORCH_CHECK_VALUE(lay == "TND" || lay == "BSND", "layoutOptional = \"", lay,
                      "\" is not supported (expected \"TND\" or \"BSND\")");
    const bool bsnd = lay == "BSND";
    require_rank(query, bsnd ? 4 : 3, "query", bsnd ? "layout BSND" : "layout TND");
    TORCH_CHECK_VALUE(value.dim() == 3 || value.dim() == 4, "opennsa: value has shape ", value.sizes(),
                      "; expected rank 3 ([numBlocks, pageBlockSize, N2*Dv]) or 4");
    TORCH_CHECK_VALUE(key_value_head_num >= 1, "numKeyValueHeads = ", key_value_head_num, " must be >= 1");
    TORCH_CHECK_VALUE(select_block_count >= 1, "selectBlockCount = ", select_block_count, " must be >= 1");
    const int64_t Dv = value.dim() == 4 ? value.size(3) : value.size(2) / key_value_head_num;

    opennsa::CompressAttentionInferArgs a;
    a.query = view_of(query, "query");
    a.key = view_of(key, "key");
    a.value = view_of(value, "value");
    a.atten_mask = optional_view(atten_mask, "atten_mask");
    a.block_table = optional_view(block_table, "block_table");
    std::vector<int64_t> out_shape(query.sizes().begin(), query.sizes().end() - 1), topk_shape(out_shape);
    out_shape.push_back(Dv);
    topk_shape.back() = key_value_head_num;
    topk_shape.push_back(select_block_count);
    at::Tensor out = at::empty(out_shape, query.options());
    at::Tensor topk = at::empty(topk_shape, query.options().dtype(at::kInt));
    a.out = view_of(out, "output");
    a.topk = view_of(topk, "topk_indices");

    opennsa::CompressAttentionInferParams p;
    p.scale = scale_value;
    p.head_num = head_num;
    p.key_value_head_num = key_value_head_num;
    p.select_block_size = select_block_size;
    p.select_block_count = select_block_count;
    p.compress_block_size = compress_block_size;
    p.compress_stride = compress_stride;
    p.page_block_size = page_block_size;
    p.layout = lay;
    p.q_seq_lens = to_vector(actual_seq_qlen);
    p.cmp_kv_seq_lens = to_vector(actual_cmp_seq_kvlen);
    p.sel_kv_seq_lens = to_vector(actual_sel_seq_kvlen);
    call_library([&] { opennsa::compress_attention_infer(a, p); });
    return {out, topk};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(opennsa, m) {
    m.def(
        "compress_attention_infer(Tensor query, Tensor key, Tensor value, float scale_value, int head_num, "
        "int key_value_head_num, int select_block_size, int select_block_count, int page_block_size, "
        "int compress_block_size, int compress_stride, *, str layout='TND', Tensor? atten_mask=None, "
        "Tensor? block_table=None, Tensor? topk_mask=None, int[]? actual_seq_qlen=None, "
        "int[]? actual_cmp_seq_kvlen=None, int[]? actual_sel_seq_kvlen=None) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(opennsa, CPU, m) { m.impl("compress_attention_infer", &compress_attention_infer_cpu); }
