// PyTorch operator of the decoding selected attention: opennsa::select_attention_infer, a CPU
// kernel over the native API with torch_npu's schema (npu_nsa_select_attention_infer). Inputs are
// handed over as they are (no copy whatever their layout); the output is a fresh contiguous tensor
// shaped as the query with the value's head dim. Not differentiable (decoding). The fake kernel is
// registered from Python (opennsa/_select_attention_infer.py).
#include "common.hpp"

using namespace opennsa_torch;

namespace {

// The output's shape: query's, with the head dim of value (rank 4 [.., N2, Dv], rank 3 [.., N2*Dv]).
std::vector<int64_t> output_shape(const at::Tensor& query, const at::Tensor& value, const std::string& layout,
                                  int64_t head_num, int64_t key_value_head_num) {
    TORCH_CHECK_VALUE(layout == "BSND" || layout == "BSH" || layout == "TND", "layoutOptional = \"", layout,
                      "\" is not supported (expected \"BSND\", \"BSH\" or \"TND\")");
    require_rank(query, layout == "BSND" ? 4 : 3, "query", layout.c_str());
    TORCH_CHECK_VALUE(value.dim() == 3 || value.dim() == 4, "opennsa: value has shape ", value.sizes(),
                      "; expected [numBlocks, P, N2, Dv] or [numBlocks, P, N2*Dv]");
    const int64_t dv = value.dim() == 4 ? value.size(3) : value.size(2) / std::max<int64_t>(key_value_head_num, 1);
    std::vector<int64_t> shape(query.sizes().begin(), query.sizes().end());
    shape.back() = layout == "BSH" ? head_num * dv : dv;
    return shape;
}

at::Tensor select_attention_infer_cpu(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                      const at::Tensor& topk_indices, double scale_value, int64_t head_num,
                                      int64_t key_value_head_num, int64_t select_block_size,
                                      int64_t select_block_count, int64_t page_block_size, c10::string_view layout,
                                      const Optional<at::Tensor>& atten_mask, const Optional<at::Tensor>& block_table,
                                      at::OptionalIntArrayRef actual_seq_qlen,
                                      at::OptionalIntArrayRef actual_seq_kvlen) {
    (void)atten_mask;  // reserved: never read (as CANN)
    const std::string lay(layout.data(), layout.size());
    at::Tensor out = at::empty(output_shape(query, value, lay, head_num, key_value_head_num), query.options());
    opennsa::SelectAttentionInferArgs a;
    a.query = view_of(query, "query");
    a.key = view_of(key, "key");
    a.value = view_of(value, "value");
    a.topk = view_of(topk_indices, "topk_indices");
    a.block_table = optional_view(block_table, "block_table");
    a.out = view_of(out, "output");
    opennsa::SelectAttentionInferParams p;
    p.scale = scale_value;
    p.head_num = head_num;
    p.key_value_head_num = key_value_head_num;
    p.select_block_size = select_block_size;
    p.select_block_count = select_block_count;
    p.page_block_size = page_block_size;
    p.layout = lay;
    p.actual_q_seq_len = to_vector(actual_seq_qlen);
    p.actual_kv_seq_len = to_vector(actual_seq_kvlen);
    call_library([&] { opennsa::select_attention_infer(a, p); });
    return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(opennsa, m) {
    m.def(
        "select_attention_infer(Tensor query, Tensor key, Tensor value, Tensor topk_indices, float scale_value, "
        "int head_num, int key_value_head_num, int select_block_size, int select_block_count, int page_block_size, "
        "*, str layout='BSND', Tensor? atten_mask=None, Tensor? block_table=None, int[]? actual_seq_qlen=None, "
        "int[]? actual_seq_kvlen=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(opennsa, CPU, m) { m.impl("select_attention_infer", &select_attention_infer_cpu); }
