"""The compression's torch operators (CPU kernels: python/csrc/compress.cpp): fake kernels,
autograd, and the torch_npu-named functions npu_nsa_compress / npu_nsa_compress_grad."""

import operator
from typing import Optional, Sequence, Tuple

import torch

from ._library import has_op_autograd, register_fake

compress = torch.ops.opennsa.compress.default
compress_grad = torch.ops.opennsa.compress_grad.default


def _seq_list(fn: str, value) -> Sequence[int]:
    """actual_seq_len: cumulative token counts as a list of ints (a tuple or a 1-D integer tensor
    works too); required."""
    if value is None:
        raise ValueError(f"opennsa: {fn}: actual_seq_len is required (the cumulative token counts of the "
                         f"batches, no leading 0, e.g. [S0, S0 + S1, ...])")
    if isinstance(value, torch.Tensor):
        if value.dim() != 1 or value.dtype.is_floating_point or value.dtype.is_complex:
            raise ValueError(f"opennsa: {fn}: actual_seq_len must be a list of ints (or a 1-D integer tensor), "
                             f"got a {value.dtype} tensor of shape {tuple(value.shape)}")
        return [int(x) for x in value.tolist()]
    try:
        return [operator.index(x) for x in value]
    except TypeError:
        raise ValueError(f"opennsa: {fn}: actual_seq_len must be a list of ints (cumulative lengths), "
                         f"got {value!r}") from None


def compressed_token_count(actual_seq_len, compress_block_size, compress_stride):
    """sum_b C(S_b): the rows of npu_nsa_compress's output for cumulative lengths actual_seq_len."""
    total, start = 0, 0
    for end in actual_seq_len:
        s = end - start
        if s >= compress_block_size:
            total += (s - compress_block_size) // compress_stride + 1
        start = end
    return total


# --------------------------------------------------------------------------------------------
# Fake (meta) kernels: output shapes and dtypes only. Full validation happens in the CPU kernel.


@register_fake("compress")
def _compress_fake(input, weight, compress_block_size, compress_stride, actual_seq_len=None):
    torch._check(input.dim() == 3,
                 lambda: f"opennsa: input has shape {tuple(input.shape)}; expected rank 3 (layout TND)")
    torch._check(actual_seq_len is not None, lambda: "opennsa: npu_nsa_compress: actual_seq_len is required")
    torch._check(compress_stride >= 1, lambda: f"compressStride = {compress_stride} must be >= 1")
    tc = compressed_token_count(actual_seq_len, compress_block_size, compress_stride)
    return input.new_empty((tc, input.shape[1], input.shape[2]))


@register_fake("compress_grad")
def _compress_grad_fake(grad, input, weight, compress_block_size, compress_stride, actual_seq_len=None):
    return input.new_empty(input.shape), weight.new_empty(weight.shape)


# --------------------------------------------------------------------------------------------
# Autograd: the gradients to input and weight come from compress_grad (as torch_npu's
# NpuNsaCompressBackward0 calls npu_nsa_compress_grad).

def _setup_context(ctx, inputs, output):
    input, weight = inputs[:2]
    ctx.save_for_backward(input, weight)
    ctx.params = tuple(inputs[2:])  # compress_block_size, compress_stride, actual_seq_len


def _backward(ctx, grad):
    input, weight = ctx.saved_tensors
    grad_input, grad_weight = compress_grad(grad, input, weight, *ctx.params)
    return grad_input, grad_weight, None, None, None


def _register_op_autograd():
    """Op-level autograd (torch >= 2.4): torch.ops.opennsa.compress itself is differentiable."""
    if not has_op_autograd():
        return False
    torch.library.register_autograd("opennsa::compress", _backward, setup_context=_setup_context)
    return True


OP_AUTOGRAD = _register_op_autograd()


class _CompressFunction(torch.autograd.Function):
    """The same autograd formula for torch versions without register_autograd."""

    @staticmethod
    def forward(ctx, *inputs):
        output = compress(*inputs)
        _setup_context(ctx, inputs, output)
        return output

    backward = staticmethod(_backward)


# --------------------------------------------------------------------------------------------
# The public functions (torch_npu's names and argument order).

def npu_nsa_compress(input: torch.Tensor, weight: torch.Tensor, compress_block_size: int, compress_stride: int, *,
                     actual_seq_len: Optional[Sequence[int]] = None) -> torch.Tensor:
    """NSA compression: output[o_b + c, h, :] = sum_r weight[r, h] * input[s_b + c*stride + r, h, :]
    for every window c of every batch b. input [T, N, D] (layout TND), weight [compress_block_size, N],
    one dtype (float16, bfloat16; also float32, float64). actual_seq_len: cumulative token counts of
    the batches (required). Returns [sum_b C(S_b), N, D], C(S) = (S - l) // d + 1 for S >= l, else 0.
    Differentiable with respect to input and weight. Raises ValueError with the library's message
    on bad input."""
    seq = _seq_list("npu_nsa_compress", actual_seq_len)
    args = (input, weight, int(compress_block_size), int(compress_stride), seq)
    if OP_AUTOGRAD or not torch.is_grad_enabled():
        return compress(*args)
    return _CompressFunction.apply(*args)


def npu_nsa_compress_grad(grad: torch.Tensor, input: torch.Tensor, weight: torch.Tensor, compress_block_size: int,
                          compress_stride: int, *,
                          actual_seq_len: Optional[Sequence[int]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Backward of npu_nsa_compress: (grad_input [T, N, D], grad_weight [l, N]) given grad =
    d(output). Rows of grad_input that no window covers are 0. Bitwise reproducible."""
    seq = _seq_list("npu_nsa_compress_grad", actual_seq_len)
    grad_input, grad_weight = compress_grad(grad, input, weight, int(compress_block_size), int(compress_stride), seq)
    return grad_input, grad_weight
