// PyTorch operators of the selected attention: opennsa::select_attention (forward) and
// opennsa::select_attention_grad (backward), CPU kernels over the native API. Each kernel hands
// the tensors' own memory to the library (data pointer with the view offset applied, sizes,
// strides in elements), so no input is copied whatever its layout; outputs are fresh contiguous
// tensors.
//
// The schemas follow torch_npu's npu_nsa_select_attention(_grad) plus sparse_mode (torch_npu
// always masks causally: sparse_mode=2 is the default here). The optional arguments are
// positional with defaults rather than keyword-only as in torch_npu, because
// torch.library.register_autograd does not take keyword-only tensors; the Python functions keep
// torch_npu's keyword-only signature. Shape propagation (fake/meta kernels) and autograd are
// registered from Python (opennsa/_select_attention.py).
#include "common.hpp"

using namespace opennsa_torch;

namespace {

opennsa::Params make_select_params(double scale, int64_t head_num, int64_t block_size, int64_t block_count,
                                   int64_t sparse_mode, at::OptionalIntArrayRef seq_q, at::OptionalIntArrayRef seq_kv) {
    opennsa::Params p;
    p.scale = scale;
    p.head_num = head_num;
    p.block_size = block_size;
    p.block_count = block_count;
    p.sparse_mode = sparse_mode;
    p.cu_seqlens_q = to_vector(seq_q);
    p.cu_seqlens_kv = to_vector(seq_kv);
    return p;
}

Tensors3 select_attention_cpu(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                              const at::Tensor& topk_indices, double scale_value, int64_t head_num,
                              int64_t select_block_size, int64_t select_block_count,
                              const Optional<at::Tensor>& atten_mask, at::OptionalIntArrayRef actual_seq_qlen,
                              at::OptionalIntArrayRef actual_seq_kvlen, int64_t sparse_mode) {
    require_rank(query, 3, "query", "layout TND");
    require_rank(value, 3, "value", "layout TND");
    opennsa::ForwardArgs a;
    a.query = view_of(query, "query");
    a.key = view_of(key, "key");
    a.value = view_of(value, "value");
    a.topk = view_of(topk_indices, "topk_indices");
    a.atten_mask = optional_view(atten_mask, "atten_mask");

    const int64_t T1 = query.size(0), N1 = query.size(1), Dv = value.size(2);
    at::Tensor out = at::empty({T1, N1, Dv}, query.options());
    at::Tensor softmax_max = at::empty({T1, N1, 8}, query.options().dtype(at::kFloat));
    at::Tensor softmax_sum = at::empty({T1, N1, 8}, query.options().dtype(at::kFloat));
    a.out = view_of(out, "attention_out");
    a.softmax_max = view_of(softmax_max, "softmax_max");
    a.softmax_sum = view_of(softmax_sum, "softmax_sum");

    const auto p = make_select_params(scale_value, head_num, select_block_size, select_block_count, sparse_mode,
                               actual_seq_qlen, actual_seq_kvlen);
    call_library([&] { opennsa::forward(a, p); });
    return {out, softmax_max, softmax_sum};
}

Tensors3 select_attention_grad_cpu(const at::Tensor& grad, const at::Tensor& query, const at::Tensor& key,
                                   const at::Tensor& value, const at::Tensor& attention_out,
                                   const at::Tensor& softmax_max, const at::Tensor& softmax_sum,
                                   const at::Tensor& topk_indices, double scale_value, int64_t head_num,
                                   int64_t select_block_size, int64_t select_block_count,
                                   const Optional<at::Tensor>& atten_mask,
                                   at::OptionalIntArrayRef actual_seq_qlen,
                                   at::OptionalIntArrayRef actual_seq_kvlen, int64_t sparse_mode) {
    opennsa::BackwardArgs a;
    a.out_grad = view_of(grad, "grad");
    a.query = view_of(query, "query");
    a.key = view_of(key, "key");
    a.value = view_of(value, "value");
    a.out = view_of(attention_out, "attention_out");
    a.softmax_max = view_of(softmax_max, "softmax_max");
    a.softmax_sum = view_of(softmax_sum, "softmax_sum");
    a.topk = view_of(topk_indices, "topk_indices");
    a.atten_mask = optional_view(atten_mask, "atten_mask");

    at::Tensor dq = at::empty(query.sizes(), query.options());
    at::Tensor dk = at::empty(key.sizes(), key.options());
    at::Tensor dv = at::empty(value.sizes(), value.options());
    a.query_grad = view_of(dq, "dq");
    a.key_grad = view_of(dk, "dk");
    a.value_grad = view_of(dv, "dv");

    const auto p = make_select_params(scale_value, head_num, select_block_size, select_block_count, sparse_mode,
                               actual_seq_qlen, actual_seq_kvlen);
    call_library([&] { opennsa::backward(a, p); });
    return {dq, dk, dv};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(opennsa, m) {
    m.def(
        "select_attention(Tensor query, Tensor key, Tensor value, Tensor topk_indices, float scale_value, "
        "int head_num, int select_block_size, int select_block_count, Tensor? atten_mask=None, "
        "int[]? actual_seq_qlen=None, int[]? actual_seq_kvlen=None, int sparse_mode=2) "
        "-> (Tensor, Tensor, Tensor)");
    m.def(
        "select_attention_grad(Tensor grad, Tensor query, Tensor key, Tensor value, Tensor attention_out, "
        "Tensor softmax_max, Tensor softmax_sum, Tensor topk_indices, float scale_value, int head_num, "
        "int select_block_size, int select_block_count, Tensor? atten_mask=None, "
        "int[]? actual_seq_qlen=None, int[]? actual_seq_kvlen=None, int sparse_mode=2) "
        "-> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(opennsa, CPU, m) {
    m.impl("select_attention", &select_attention_cpu);
    m.impl("select_attention_grad", &select_attention_grad_cpu);
}
