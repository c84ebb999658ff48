"""The selected attention's torch operators: fake kernels and autograd (the CPU kernels are
python/csrc/select_attention.cpp)."""

import torch

from ._library import has_op_autograd, register_fake

select_attention = torch.ops.opennsa.select_attention.default
select_attention_grad = torch.ops.opennsa.select_attention_grad.default

_STATS = 8  # softmax_max / softmax_sum rows hold 8 equal fp32 values (CANN's layout)


# --------------------------------------------------------------------------------------------
# Fake (meta) kernels: output shapes and dtypes only. Full validation happens in the CPU kernel.


def _check_rank3(t, name):
    torch._check(t.dim() == 3, lambda: f"opennsa: {name} has shape {tuple(t.shape)}; expected rank 3 (layout TND)")


@register_fake("select_attention")
def _select_attention_fake(query, key, value, topk_indices, scale_value, head_num, select_block_size,
                           select_block_count, atten_mask=None, actual_seq_qlen=None,
                           actual_seq_kvlen=None, sparse_mode=2):
    _check_rank3(query, "query")
    _check_rank3(value, "value")
    t1, n1 = query.shape[0], query.shape[1]
    out = query.new_empty((t1, n1, value.shape[2]))
    softmax_max = query.new_empty((t1, n1, _STATS), dtype=torch.float32)
    softmax_sum = query.new_empty((t1, n1, _STATS), dtype=torch.float32)
    return out, softmax_max, softmax_sum


@register_fake("select_attention_grad")
def _select_attention_grad_fake(grad, query, key, value, attention_out, softmax_max, softmax_sum,
                                topk_indices, scale_value, head_num, select_block_size, select_block_count,
                                atten_mask=None, actual_seq_qlen=None, actual_seq_kvlen=None,
                                sparse_mode=2):
    return query.new_empty(query.shape), key.new_empty(key.shape), value.new_empty(value.shape)


# --------------------------------------------------------------------------------------------
# Autograd. Gradients flow from attention_out to query, key and value; softmax_max and
# softmax_sum are statistics for the backward and are not differentiable.

def _grad_inputs(ctx, grad_out):
    query, key, value, topk, out, smax, ssum = ctx.saved_tensors
    return select_attention_grad(grad_out, query, key, value, out, smax, ssum, topk, *ctx.params)


def _setup_context(ctx, inputs, output):
    # inputs: query, key, value, topk_indices, then the eight non-differentiable arguments
    # (scale_value, head_num, select_block_size, select_block_count, atten_mask,
    # actual_seq_qlen, actual_seq_kvlen, sparse_mode) in schema order.
    query, key, value, topk = inputs[:4]
    out, smax, ssum = output
    ctx.save_for_backward(query, key, value, topk, out, smax, ssum)
    ctx.params = tuple(inputs[4:])
    ctx.mark_non_differentiable(smax, ssum)


def _backward(ctx, grad_out, grad_max, grad_sum):
    dq, dk, dv = _grad_inputs(ctx, grad_out)
    return (dq, dk, dv) + (None,) * 9


def _register_op_autograd():
    """Op-level autograd (torch >= 2.4), so that torch.ops.opennsa.select_attention itself is
    differentiable (torch.compile, opcheck). Older torch: the Python API uses
    _SelectAttentionFunction instead."""
    if not has_op_autograd():
        return False
    torch.library.register_autograd("opennsa::select_attention", _backward, setup_context=_setup_context)
    return True


OP_AUTOGRAD = _register_op_autograd()


class _SelectAttentionFunction(torch.autograd.Function):
    """The same autograd formula as a torch.autograd.Function, for torch versions whose
    register_autograd is missing or does not take keyword-only arguments."""

    @staticmethod
    def forward(ctx, *inputs):
        output = select_attention(*inputs)
        _setup_context(ctx, inputs, output)
        return output

    backward = staticmethod(_backward)
