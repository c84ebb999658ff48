// PyTorch operators over the native API: opennsa::select_attention (forward) and
// opennsa::select_attention_grad (backward), CPU kernels. Each kernel hands the tensors' own
// memory to the library (data pointer with the view offset applied, sizes, strides in elements),
// so no input is copied whatever its layout; outputs are fresh contiguous tensors.
//
// The schemas follow torch_npu's npu_nsa_select_attention(_grad) plus sparse_mode (torch_npu
// always masks causally: sparse_mode=2 is the default here). The optional arguments are
// positional with defaults rather than keyword-only as in torch_npu, because
// torch.library.register_autograd does not take keyword-only tensors; the Python functions keep
// torch_npu's keyword-only signature. Shape propagation
// (fake/meta kernels) and autograd are registered from Python (opennsa/_ops.py).
//
// Written against the ATen API of PyTorch 2.1 so that any torch >= 2.1 builds it.
#include <ATen/ATen.h>
#include <torch/library.h>
#include <torch/version.h>

#include <opennsa/opennsa.hpp>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace {

// torch 2.4 made c10::optional an alias of std::optional; later releases drop the alias.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
template <class T>
using Optional = std::optional<T>;
#else
template <class T>
using Optional = c10::optional<T>;
#endif

using Tensors3 = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

opennsa::DType to_dtype(const at::Tensor& t, const char* name) {
    switch (t.scalar_type()) {
        case at::kHalf: return opennsa::DType::f16;
        case at::kBFloat16: return opennsa::DType::bf16;
        case at::kFloat: return opennsa::DType::f32;
        case at::kDouble: return opennsa::DType::f64;
        case at::kInt: return opennsa::DType::i32;
        case at::kLong: return opennsa::DType::i64;
        case at::kByte: return opennsa::DType::u8;
        case at::kBool: return opennsa::DType::boolean;
        default:
            TORCH_CHECK_VALUE(false, "opennsa: ", name, " has dtype ", t.scalar_type(),
                              ", which the operator does not take");
    }
    return opennsa::DType::f32;  // unreachable
}

// A view of the tensor's memory as it is: no copy, strides in elements, offset applied.
opennsa::TensorView view_of(const at::Tensor& t, const char* name) {
    TORCH_CHECK_VALUE(t.device().is_cpu(), "opennsa: ", name, " is on ", t.device(),
                      "; the operators run on CPU tensors");
    TORCH_CHECK_VALUE(t.dim() >= 1 && t.dim() <= opennsa::kMaxRank, "opennsa: ", name, " has rank ",
                      t.dim(), " (shape ", t.sizes(), "); expected rank 3 (TND) or 2 for the mask");
    opennsa::TensorView v;
    v.data = t.data_ptr();
    v.dtype = to_dtype(t, name);
    v.rank = static_cast<int>(t.dim());
    for (int d = 0; d < v.rank; ++d) {
        v.shape[d] = t.size(d);
        v.strides[d] = t.stride(d);
    }
    return v;
}

opennsa::TensorView optional_view(const Optional<at::Tensor>& t, const char* name) {
    if (!t.has_value() || !t->defined()) return {};
    return view_of(*t, name);
}

opennsa::Params make_params(double scale, int64_t head_num, int64_t block_size, int64_t block_count,
                            int64_t sparse_mode, at::OptionalIntArrayRef seq_q,
                            at::OptionalIntArrayRef seq_kv) {
    opennsa::Params p;
    p.scale = scale;
    p.head_num = head_num;
    p.block_size = block_size;
    p.block_count = block_count;
    p.sparse_mode = sparse_mode;
    if (seq_q.has_value()) p.cu_seqlens_q = std::vector<std::int64_t>(seq_q->begin(), seq_q->end());
    if (seq_kv.has_value()) p.cu_seqlens_kv = std::vector<std::int64_t>(seq_kv->begin(), seq_kv->end());
    return p;
}

// The library reports bad input as opennsa::Error; Python sees ValueError for argument errors
// (message unchanged) and RuntimeError for internal failures.
template <class F>
void call_library(F&& f) {
    try {
        f();
    } catch (const opennsa::Error& e) {
        if (e.code() == opennsa::ErrorCode::internal) TORCH_CHECK(false, "opennsa: ", e.what());
        TORCH_CHECK_VALUE(false, e.what());
    }
}

void require_rank3(const at::Tensor& t, const char* name) {
    TORCH_CHECK_VALUE(t.dim() == 3, "opennsa: ", name, " has shape ", t.sizes(),
                      "; expected rank 3 (layout TND)");
}

Tensors3 select_attention_cpu(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                              const at::Tensor& topk_indices, double scale_value, int64_t head_num,
                              int64_t select_block_size, int64_t select_block_count,
                              const Optional<at::Tensor>& atten_mask, at::OptionalIntArrayRef actual_seq_qlen,
                              at::OptionalIntArrayRef actual_seq_kvlen, int64_t sparse_mode) {
    require_rank3(query, "query");
    require_rank3(value, "value");
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

    const auto p = make_params(scale_value, head_num, select_block_size, select_block_count, sparse_mode,
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

    const auto p = make_params(scale_value, head_num, select_block_size, select_block_count, sparse_mode,
                               actual_seq_qlen, actual_seq_kvlen);
    call_library([&] { opennsa::backward(a, p); });
    return {dq, dk, dv};
}

void set_num_threads(int64_t n) { opennsa::set_num_threads(static_cast<int>(n)); }
int64_t get_num_threads() { return opennsa::num_threads(); }
std::string library_version() { return opennsa::version(); }

}  // namespace

TORCH_LIBRARY(opennsa, m) {
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
    // Thread count of the library's own pool (results are identical for every count).
    m.def("set_num_threads(int n) -> ()", &set_num_threads);
    m.def("get_num_threads() -> int", &get_num_threads);
    m.def("version() -> str", &library_version);
}

TORCH_LIBRARY_IMPL(opennsa, CPU, m) {
    m.impl("select_attention", &select_attention_cpu);
    m.impl("select_attention_grad", &select_attention_grad_cpu);
}
