"""The compress attention's torch operators (the CPU kernels are python/csrc/compress_attention.cpp):
fake kernels, autograd, and the torch_npu-style function npu_nsa_compress_attention."""

from typing import Optional, Sequence, Tuple

import torch

from ._library import has_op_autograd, register_fake

compress_attention = torch.ops.opennsa.compress_attention.default
compress_attention_grad = torch.ops.opennsa.compress_attention_grad.default

_STATS = 8  # softmax_max / softmax_sum rows hold 8 equal fp32 values (CANN's layout)


# --------------------------------------------------------------------------------------------
# Fake (meta) kernels: output shapes and dtypes only. Full validation happens in the CPU kernel.


def _check_rank3(t, name):
    torch._check(t.dim() == 3, lambda: f"opennsa: {name} has shape {tuple(t.shape)}; expected rank 3 (layout TND)")


@register_fake("compress_attention")
def _compress_attention_fake(query, key, value, scale_value, head_num, compress_block_size, compress_stride,
                             select_block_size, select_block_count, topk_mask=None, atten_mask=None,
                             actual_seq_qlen=None, actual_cmp_seq_kvlen=None, actual_sel_seq_kvlen=None,
                             sparse_mode=1):
    for t, name in ((query, "query"), (key, "key"), (value, "value")):
        _check_rank3(t, name)
    t1, n1 = query.shape[0], query.shape[1]
    out = query.new_empty((t1, n1, value.shape[2]))
    topk = query.new_empty((t1, key.shape[1], select_block_count), dtype=torch.int32)
    softmax_max = query.new_empty((t1, n1, _STATS), dtype=torch.float32)
    softmax_sum = query.new_empty((t1, n1, _STATS), dtype=torch.float32)
    return out, topk, softmax_max, softmax_sum


@register_fake("compress_attention_grad")
def _compress_attention_grad_fake(grad, query, key, value, attention_out, softmax_max, softmax_sum, scale_value,
                                  head_num, compress_block_size, compress_stride, select_block_size,
                                  select_block_count, atten_mask=None, actual_seq_qlen=None,
                                  actual_cmp_seq_kvlen=None, sparse_mode=1):
    return query.new_empty(query.shape), key.new_empty(key.shape), value.new_empty(value.shape)


# --------------------------------------------------------------------------------------------
# Autograd. Gradients flow from attention_out to query, key and value (torch_npu's autograd node
# differentiates attention_out only); topk_indices and the statistics are not differentiable.

# Schema positions of the forward's arguments.
_ATTRS = slice(3, 9)  # scale_value, head_num, compress_block_size, compress_stride, select_block_size, select_block_count
_ATTEN_MASK, _SEQ_Q, _SEQ_CMP, _SPARSE_MODE = 10, 11, 12, 14
_N_INPUTS = 15


def _setup_context(ctx, inputs, output):
    query, key, value = inputs[:3]
    out, topk, smax, ssum = output
    ctx.save_for_backward(query, key, value, out, smax, ssum)
    ctx.params = tuple(inputs[_ATTRS]) + (inputs[_ATTEN_MASK], inputs[_SEQ_Q], inputs[_SEQ_CMP], inputs[_SPARSE_MODE])
    ctx.mark_non_differentiable(topk, smax, ssum)


def _backward(ctx, grad_out, grad_topk, grad_max, grad_sum):
    query, key, value, out, smax, ssum = ctx.saved_tensors
    dq, dk, dv = compress_attention_grad(grad_out, query, key, value, out, smax, ssum, *ctx.params)
    return (dq, dk, dv) + (None,) * (_N_INPUTS - 3)


def _register_op_autograd():
    """Op-level autograd (torch >= 2.4), so that torch.ops.opennsa.compress_attention itself is
    differentiable (torch.compile, opcheck). Older torch: the Python function uses
    _CompressAttentionFunction instead."""
    if not has_op_autograd():
        return False
    torch.library.register_autograd("opennsa::compress_attention", _backward, setup_context=_setup_context)
    return True


OP_AUTOGRAD = _register_op_autograd()


class _CompressAttentionFunction(torch.autograd.Function):
    """The same autograd formula as a torch.autograd.Function, for torch versions without
    torch.library.register_autograd."""

    @staticmethod
    def forward(ctx, *inputs):
        output = compress_attention(*inputs)
        _setup_context(ctx, inputs, output)
        return output

    backward = staticmethod(_backward)


# --------------------------------------------------------------------------------------------
# The torch_npu-style function.


def _seq_list(name: str, value) -> Optional[Sequence[int]]:
    """A cumulative length argument as a list of ints (a tuple or a 1-D integer tensor works too)."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        if value.dim() != 1 or value.dtype.is_floating_point or value.dtype.is_complex:
            raise ValueError(f"opennsa: {name} must be a list of ints (or a 1-D integer tensor), got a "
                             f"{value.dtype} tensor of shape {tuple(value.shape)}")
        return [int(x) for x in value.tolist()]
    try:
        return [int(x) for x in value]
    except TypeError:
        raise ValueError(f"opennsa: {name} must be a list of cumulative lengths, got {value!r}") from None


def npu_nsa_compress_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale_value: float,
                               head_num: int, compress_block_size: int, compress_stride: int,
                               select_block_size: int, select_block_count: int, *,
                               topk_mask: Optional[torch.Tensor] = None,
                               atten_mask: Optional[torch.Tensor] = None,
                               actual_seq_qlen: Optional[Sequence[int]] = None,
                               actual_cmp_seq_kvlen: Optional[Sequence[int]] = None,
                               actual_sel_seq_kvlen: Optional[Sequence[int]] = None,
                               sparse_mode: int = 1
                               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attention of every query over its batch's compressed keys and values, and the top-k
    selection blocks from its probabilities. Returns (attention_out [T1, N1, Dv], topk_indices
    [T1, N2, select_block_count] int32, softmax_max [T1, N1, 8], softmax_sum [T1, N1, 8]); the
    statistics are float32 in CANN's head-major layout (flat row qs_b * N1 + h * S1_b + i). Only
    attention_out is differentiable (to query, key and value).

    query [T1, N1, Dk], key [T2, N2, Dk] and value [T2, N2, Dv] (Dv <= Dk) in layout TND, the
    compressed keys and values of npu_nsa_compress. sparse_mode 1 (default, torch_npu) or 0:
    atten_mask [>= maxS1, >= maxC] bool/uint8 (nonzero = masked) when given, else every compressed
    token of the batch is visible; 2: the NSA causal rule built in (compressed token j visible to
    query position i iff j * compress_stride + compress_block_size - 1 <= i). topk_mask
    [>= maxS1, >= maxNS] forces blocks. actual_seq_qlen / actual_cmp_seq_kvlen: cumulative counts
    without a leading zero, both or neither; actual_sel_seq_kvlen is accepted and not read.
    Raises ValueError with the library's message on bad input.
    """
    args = (query, key, value, float(scale_value), int(head_num), int(compress_block_size), int(compress_stride),
            int(select_block_size), int(select_block_count), topk_mask, atten_mask,
            _seq_list("actual_seq_qlen", actual_seq_qlen), _seq_list("actual_cmp_seq_kvlen", actual_cmp_seq_kvlen),
            _seq_list("actual_sel_seq_kvlen", actual_sel_seq_kvlen), int(sparse_mode))
    if OP_AUTOGRAD or not torch.is_grad_enabled():
        return compress_attention(*args)
    return _CompressAttentionFunction.apply(*args)
