// PyTorch operators of the compress attention: opennsa::compress_attention (forward: attention
// over the compressed tokens plus the top-k block selection) and opennsa::compress_attention_grad
// (the backward of attention_out), CPU kernels over the native API. Inputs are handed over as they
// are (data pointer with the view offset applied, sizes, strides in elements): no copy whatever
// their layout; outputs are fresh contiguous tensors. The softmax statistics are in CANN's
// head-major layout (docs/spec/compress_attention.md section 7), which the grad op reads back.
//
// The schemas follow torch_npu's npu_nsa_compress_attention plus sparse_mode (1, torch_npu's
// behaviour, by default). The optional arguments are positional with defaults rather than
// keyword-only, because torch.library.register_autograd does not take keyword-only tensors; the
// Python function keeps torch_npu's keyword-only signature. Fake kernels and autograd are
// registered from Python (opennsa/_compress_attention.py).
#include "common.hpp"

using namespace opennsa_torch;

namespace {

using Tensors4 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

opennsa::CompressAttentionParams make_params(double scale, int64_t head_num, int64_t compress_block_size,
                                             int64_t compress_stride, int64_t select_block_size,
                                             int64_t select_block_count, int64_t sparse_mode,
                                             at::OptionalIntArrayRef seq_q, at::OptionalIntArrayRef seq_cmp_kv,
                                             at::OptionalIntArrayRef seq_sel_kv) {
    opennsa::CompressAttentionParams p;
    p.scale = scale;
    p.head_num = head_num;
    p.compress_block_size = compress_block_size;
    p.compress_stride = compress_stride;
    p.select_block_size = select_block_size;
    p.select_block_count = select_block_count;
    p.sparse_mode = sparse_mode;
    p.cu_seqlens_q = to_vector(seq_q);
    p.cu_seqlens_cmp_kv = to_vector(seq_cmp_kv);
    p.cu_seqlens_sel_kv = to_vector(seq_sel_kv);
    p.stats_token_major = false;  // CANN's layout, as torch_npu returns it
    return p;
}

Tensors4 compress_attention_cpu(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                double scale_value, int64_t head_num, int64_t compress_block_size,
                                int64_t compress_stride, int64_t select_block_size, int64_t select_block_count,
                                const Optional<at::Tensor>& topk_mask, const Optional<at::Tensor>& atten_mask,
                                at::OptionalIntArrayRef actual_seq_qlen, at::OptionalIntArrayRef actual_cmp_seq_kvlen,
                                at::OptionalIntArrayRef actual_sel_seq_kvlen, int64_t sparse_mode) {
    require_rank(query, 3, "query", "layout TND");
    require_rank(key, 3, "key", "layout TND");
    require_rank(value, 3, "value", "layout TND");
    TORCH_CHECK_VALUE(select_block_count >= 1, "selectBlockCount = ", select_block_count, " must be >= 1");
    opennsa::CompressAttentionArgs a;
    a.query = view_of(query, "query");
    a.key = view_of(key, "key");
    a.value = view_of(value, "value");
    a.topk_mask = optional_view(topk_mask, "topk_mask");
    a.atten_mask = optional_view(atten_mask, "atten_mask");

    const int64_t T1 = query.size(0), N1 = query.size(1), N2 = key.size(1), Dv = value.size(2);
    at::Tensor out = at::empty({T1, N1, Dv}, query.options());
    at::Tensor topk = at::empty({T1, N2, select_block_count}, query.options().dtype(at::kInt));
    at::Tensor softmax_max = at::empty({T1, N1, 8}, query.options().dtype(at::kFloat));
    at::Tensor softmax_sum = at::empty({T1, N1, 8}, query.options().dtype(at::kFloat));
    a.out = view_of(out, "attention_out");
    a.topk = view_of(topk, "topk_indices");
    a.softmax_max = view_of(softmax_max, "softmax_max");
    a.softmax_sum = view_of(softmax_sum, "softmax_sum");

    const auto p = make_params(scale_value, head_num, compress_block_size, compress_stride, select_block_size,
                               select_block_count, sparse_mode, actual_seq_qlen, actual_cmp_seq_kvlen,
                               actual_sel_seq_kvlen);
    call_library([&] { opennsa::compress_attention(a, p); });
    return {out, topk, softmax_max, softmax_sum};
}

Tensors3 compress_attention_grad_cpu(const at::Tensor& grad, const at::Tensor& query, const at::Tensor& key,
                                     const at::Tensor& value, const at::Tensor& attention_out,
                                     const at::Tensor& softmax_max, const at::Tensor& softmax_sum, double scale_value,
                                     int64_t head_num, int64_t compress_block_size, int64_t compress_stride,
                                     int64_t select_block_size, int64_t select_block_count,
                                     const Optional<at::Tensor>& atten_mask, at::OptionalIntArrayRef actual_seq_qlen,
                                     at::OptionalIntArrayRef actual_cmp_seq_kvlen, int64_t sparse_mode) {
    opennsa::CompressAttentionGradArgs a;
    a.out_grad = view_of(grad, "grad");
    a.query = view_of(query, "query");
    a.key = view_of(key, "key");
    a.value = view_of(value, "value");
    a.out = view_of(attention_out, "attention_out");
    a.softmax_max = view_of(softmax_max, "softmax_max");
    a.softmax_sum = view_of(softmax_sum, "softmax_sum");
    a.atten_mask = optional_view(atten_mask, "atten_mask");

    at::Tensor dq = at::empty(query.sizes(), query.options());
    at::Tensor dk = at::empty(key.sizes(), key.options());
    at::Tensor dv = at::empty(value.sizes(), value.options());
    a.query_grad = view_of(dq, "dq");
    a.key_grad = view_of(dk, "dk");
    a.value_grad = view_of(dv, "dv");

    const auto p = make_params(scale_value, head_num, compress_block_size, compress_stride, select_block_size,
                               select_block_count, sparse_mode, actual_seq_qlen, actual_cmp_seq_kvlen, at::OptionalIntArrayRef());
    call_library([&] { opennsa::compress_attention_backward(a, p); });
    return {dq, dk, dv};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(opennsa, m) {
    m.def(
        "compress_attention(Tensor query, Tensor key, Tensor value, float scale_value, int head_num, "
        "int compress_block_size, int compress_stride, int select_block_size, int select_block_count, "
        "Tensor? topk_mask=None, Tensor? atten_mask=None, int[]? actual_seq_qlen=None, "
        "int[]? actual_cmp_seq_kvlen=None, int[]? actual_sel_seq_kvlen=None, int sparse_mode=1) "
        "-> (Tensor, Tensor, Tensor, Tensor)");
    m.def(
        "compress_attention_grad(Tensor grad, Tensor query, Tensor key, Tensor value, Tensor attention_out, "
        "Tensor softmax_max, Tensor softmax_sum, float scale_value, int head_num, int compress_block_size, "
        "int compress_stride, int select_block_size, int select_block_count, Tensor? atten_mask=None, "
        "int[]? actual_seq_qlen=None, int[]? actual_cmp_seq_kvlen=None, int sparse_mode=1) "
        "-> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(opennsa, CPU, m) {
    m.impl("compress_attention", &compress_attention_cpu);
    m.impl("compress_attention_grad", &compress_attention_grad_cpu);
}
