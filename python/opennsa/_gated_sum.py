"""The layer's gated sum of branch outputs as one torch operator each way (CPU kernels:
python/csrc/gated_sum.cpp): fake kernels, autograd, and gated_sum()."""

from typing import Sequence

import torch

from ._library import has_op_autograd, register_fake

_gated_sum = torch.ops.opennsa.gated_sum.default
_gated_sum_backward = torch.ops.opennsa.gated_sum_backward.default


@register_fake("gated_sum")
def _gated_sum_fake(gates, outputs, columns):
    torch._check(len(outputs) > 0, lambda: "opennsa: gated_sum: outputs is empty")
    return outputs[0].new_empty(outputs[0].shape)


@register_fake("gated_sum_backward")
def _gated_sum_backward_fake(grad, gates, outputs, columns):
    return gates.new_empty(gates.shape), [o.new_empty(o.shape) for o in outputs]


def _setup_context(ctx, inputs, output):
    gates, outputs, columns = inputs
    ctx.save_for_backward(gates, *outputs)
    ctx.columns = list(columns)


def _backward(ctx, grad):
    gates, *outputs = ctx.saved_tensors
    grad_gates, grad_outputs = _gated_sum_backward(grad, gates, outputs, ctx.columns)
    return grad_gates, list(grad_outputs), None


def _register_op_autograd():
    """Op-level autograd (torch >= 2.4): torch.ops.opennsa.gated_sum itself is differentiable."""
    if not has_op_autograd():
        return False
    torch.library.register_autograd("opennsa::gated_sum", _backward, setup_context=_setup_context)
    return True


OP_AUTOGRAD = _register_op_autograd()


class _GatedSumFunction(torch.autograd.Function):
    """The same formula for torch versions without register_autograd (outputs unpacked, since
    autograd.Function differentiates only tensor arguments)."""

    @staticmethod
    def forward(ctx, gates, columns, *outputs):
        result = _gated_sum(gates, list(outputs), columns)
        _setup_context(ctx, (gates, outputs, columns), result)
        return result

    @staticmethod
    def backward(ctx, grad):
        grad_gates, grad_outputs, _ = _backward(ctx, grad)
        return (grad_gates, None, *grad_outputs)


def gated_sum(gates: torch.Tensor, outputs: Sequence[torch.Tensor], columns: Sequence[int]) -> torch.Tensor:
    """sum_i gates[:, :, columns[i]] * outputs[i]: gates [T, N, C], outputs [T, N, D] each, one
    dtype; accumulated in fp32 (fp64 for fp64) and rounded once. Differentiable with respect to
    gates and every output (the gate columns no output uses get gradient 0); bitwise identical
    for every thread count."""
    outputs, columns = list(outputs), [int(c) for c in columns]
    if OP_AUTOGRAD or not torch.is_grad_enabled():
        return _gated_sum(gates, outputs, columns)
    return _GatedSumFunction.apply(gates, columns, *outputs)
