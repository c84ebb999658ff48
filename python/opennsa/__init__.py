"""OpenNSA: Native Sparse Attention's selected attention, forward and backward, on CPU tensors.

The two functions take torch_npu's arguments (torch_npu.npu_nsa_select_attention and
torch_npu.npu_nsa_select_attention_grad), so NPU code runs on CPU unchanged. The forward is
differentiable: ``out.backward()`` reaches query, key and value.

Layout TND: query [T1, N1, Dk], key [T2, N2, Dk], value [T2, N2, Dv], topk_indices [T1, N2, C]
int32 (block indices relative to the batch's first key; -1 marks an empty slot). dtypes float16,
bfloat16, float32 and float64. Inputs may be any strided views; they are read in place.
"""

from typing import Optional, Sequence, Tuple

import torch

from . import _library  # noqa: F401  (loads the compiled operators)
from . import _select_attention as _ops
from ._compress import npu_nsa_compress, npu_nsa_compress_grad
from ._compress_attention import npu_nsa_compress_attention
from ._compress_attention_infer import npu_nsa_compress_attention_infer
from ._select_attention_infer import npu_nsa_select_attention_infer
from ._compress_with_cache import npu_nsa_compress_infer

__all__ = [
    "npu_nsa_select_attention",
    "npu_nsa_select_attention_grad",
    "npu_nsa_compress",
    "npu_nsa_compress_grad",
    "npu_nsa_compress_attention",
    "npu_nsa_compress_attention_infer",
    "npu_nsa_select_attention_infer",
    "npu_nsa_compress_infer",
    "set_num_threads",
    "get_num_threads",
    "library_version",
]

__version__ = "0.1.0"


def _seq_list(name: str, value) -> Optional[Sequence[int]]:
    """actual_seq_qlen / actual_seq_kvlen: cumulative lengths as a list of ints (a tuple or a 1-D
    integer tensor works too)."""
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


def npu_nsa_select_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             topk_indices: torch.Tensor, scale_value: float, head_num: int,
                             select_block_size: int, select_block_count: int, *,
                             atten_mask: Optional[torch.Tensor] = None,
                             actual_seq_qlen: Optional[Sequence[int]] = None,
                             actual_seq_kvlen: Optional[Sequence[int]] = None,
                             sparse_mode: int = 2) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Selected attention forward. Returns (attention_out [T1, N1, Dv], softmax_max [T1, N1, 8],
    softmax_sum [T1, N1, 8]); the statistics are float32 and not differentiable.

    sparse_mode: 2 (default, as torch_npu) is causal per batch, key position p visible to query
    position i iff p <= i; 0 is no mask. atten_mask is validated (2-D bool/uint8) but not read.
    actual_seq_qlen / actual_seq_kvlen: cumulative token counts per batch without a leading zero,
    both or neither (neither: one batch). Raises ValueError with the library's message on bad input.
    """
    seq_q = _seq_list("actual_seq_qlen", actual_seq_qlen)
    seq_kv = _seq_list("actual_seq_kvlen", actual_seq_kvlen)
    if _ops.OP_AUTOGRAD or not torch.is_grad_enabled():
        return _ops.select_attention(query, key, value, topk_indices, float(scale_value), int(head_num),
                                     int(select_block_size), int(select_block_count), atten_mask=atten_mask,
                                     actual_seq_qlen=seq_q, actual_seq_kvlen=seq_kv,
                                     sparse_mode=int(sparse_mode))
    return _ops._SelectAttentionFunction.apply(query, key, value, topk_indices, float(scale_value),
                                               int(head_num), int(select_block_size), int(select_block_count),
                                               atten_mask, seq_q, seq_kv, int(sparse_mode))


def npu_nsa_select_attention_grad(grad: torch.Tensor, query: torch.Tensor, key: torch.Tensor,
                                  value: torch.Tensor, attention_out: torch.Tensor,
                                  softmax_max: torch.Tensor, softmax_sum: torch.Tensor,
                                  topk_indices: torch.Tensor, scale_value: float, head_num: int,
                                  select_block_size: int, select_block_count: int, *,
                                  atten_mask: Optional[torch.Tensor] = None,
                                  actual_seq_qlen: Optional[Sequence[int]] = None,
                                  actual_seq_kvlen: Optional[Sequence[int]] = None,
                                  sparse_mode: int = 2) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Selected attention backward: (dq, dk, dv) given grad = d(attention_out) and the forward's
    attention_out, softmax_max and softmax_sum. Same arguments as the forward otherwise."""
    return _ops.select_attention_grad(grad, query, key, value, attention_out, softmax_max, softmax_sum,
                                      topk_indices, float(scale_value), int(head_num), int(select_block_size),
                                      int(select_block_count), atten_mask=atten_mask,
                                      actual_seq_qlen=_seq_list("actual_seq_qlen", actual_seq_qlen),
                                      actual_seq_kvlen=_seq_list("actual_seq_kvlen", actual_seq_kvlen),
                                      sparse_mode=int(sparse_mode))


def set_num_threads(n: int) -> None:
    """The library's thread count (n < 1: back to the default, OPENNSA_NUM_THREADS or all cores).
    While torch.get_num_threads() >= 2 the operators run on torch's intra-op threads, at most that
    many (two pools on the same cores slow each other down); with torch at 1 thread, on the
    library's own pool. Results are bitwise identical for every thread count."""
    torch.ops.opennsa.set_num_threads(int(n))


def get_num_threads() -> int:
    return int(torch.ops.opennsa.get_num_threads())


def library_version() -> str:
    """Version of the C++ library linked into the extension."""
    return str(torch.ops.opennsa.version())


from ._sliding_window import sliding_window_attention  # noqa: E402  (needs the operators above)
from . import nn  # noqa: E402,F401  (opennsa.nn.NativeSparseAttention)

__all__ += ["sliding_window_attention", "nn"]
