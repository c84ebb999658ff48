// PyTorch operators of the compression: opennsa::compress (forward) and opennsa::compress_grad
// (backward), CPU kernels over the native API. Each kernel hands the tensors' own memory to the
// library (data pointer with the view offset applied, sizes, strides in elements), so no input is
// copied whatever its layout (an expanded, stride-0 grad included); outputs are fresh contiguous
// tensors. The output of compress is sized here: [sum_b C(S_b), N, D].
//
// The schemas are torch_npu's npu_nsa_compress(_grad) with actual_seq_len positional (as for the
// selected attention: torch.library.register_autograd does not take keyword-only arguments); the
// Python functions keep torch_npu's keyword-only signature. actual_seq_len holds cumulative ends
// (CANN's actSeqLenType 0, layout TND, as torch_npu passes them) and is required, as torch_npu
// documents, despite the "?" of its schema. Fake kernels and autograd: opennsa/_compress.py.
#include "common.hpp"

using namespace opennsa_torch;

namespace {

opennsa::CompressParams make_compress_params(int64_t block_size, int64_t stride, at::OptionalIntArrayRef seq,
                                             const char* fn) {
    TORCH_CHECK_VALUE(seq.has_value(), "opennsa: ", fn,
                      ": actual_seq_len is required (the cumulative token counts of the batches, no leading 0)");
    opennsa::CompressParams p;
    p.block_size = block_size;
    p.stride = stride;
    p.seq_lens = *to_vector(seq);
    p.seq_len_type = opennsa::kSeqLenCumulative;
    return p;
}

at::Tensor compress_cpu(const at::Tensor& input, const at::Tensor& weight, int64_t compress_block_size,
                        int64_t compress_stride, at::OptionalIntArrayRef actual_seq_len) {
    require_rank(input, 3, "input", "layout TND");
    const auto p = make_compress_params(compress_block_size, compress_stride, actual_seq_len, "npu_nsa_compress");
    opennsa::CompressArgs a;
    a.input = view_of(input, "input");
    a.weight = view_of(weight, "weight");
    int64_t Tc = 0;
    call_library([&] { Tc = opennsa::compressed_token_count(input.size(0), p); });
    at::Tensor output = at::empty({Tc, input.size(1), input.size(2)}, input.options());
    a.output = view_of(output, "output");
    call_library([&] { opennsa::compress(a, p); });
    return output;
}

std::tuple<at::Tensor, at::Tensor> compress_grad_cpu(const at::Tensor& grad, const at::Tensor& input,
                                                     const at::Tensor& weight, int64_t compress_block_size,
                                                     int64_t compress_stride, at::OptionalIntArrayRef actual_seq_len) {
    const auto p = make_compress_params(compress_block_size, compress_stride, actual_seq_len, "npu_nsa_compress_grad");
    opennsa::CompressGradArgs a;
    a.output_grad = view_of(grad, "grad");
    a.input = view_of(input, "input");
    a.weight = view_of(weight, "weight");
    at::Tensor grad_input = at::empty(input.sizes(), input.options());
    at::Tensor grad_weight = at::empty(weight.sizes(), weight.options());
    a.input_grad = view_of(grad_input, "grad_input");
    a.weight_grad = view_of(grad_weight, "grad_weight");
    call_library([&] { opennsa::compress_backward(a, p); });
    return {grad_input, grad_weight};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(opennsa, m) {
    m.def(
        "compress(Tensor input, Tensor weight, int compress_block_size, int compress_stride, "
        "int[]? actual_seq_len=None) -> Tensor");
    m.def(
        "compress_grad(Tensor grad, Tensor input, Tensor weight, int compress_block_size, int compress_stride, "
        "int[]? actual_seq_len=None) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(opennsa, CPU, m) {
    m.impl("compress", &compress_cpu);
    m.impl("compress_grad", &compress_grad_cpu);
}
