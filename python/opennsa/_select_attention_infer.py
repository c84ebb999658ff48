"""The decoding selected attention's torch operator (the CPU kernel is
python/csrc/select_attention_infer.cpp): its fake kernel and the torch_npu-style function
npu_nsa_select_attention_infer. Not differentiable (decoding)."""

from typing import Optional, Sequence

import torch

from ._library import register_fake

select_attention_infer = torch.ops.opennsa.select_attention_infer.default


@register_fake("select_attention_infer")
def _select_attention_infer_fake(query, key, value, topk_indices, scale_value, head_num, key_value_head_num,
                                 select_block_size, select_block_count, page_block_size, *, layout="BSND",
                                 atten_mask=None, block_table=None, actual_seq_qlen=None, actual_seq_kvlen=None):
    torch._check(layout in ("BSND", "BSH", "TND"), lambda: f"layoutOptional = \"{layout}\" is not supported")
    torch._check(query.dim() == (4 if layout == "BSND" else 3),
                 lambda: f"opennsa: query has shape {tuple(query.shape)}; wrong rank for layout {layout}")
    dv = value.shape[3] if value.dim() == 4 else value.shape[2] // max(key_value_head_num, 1)
    shape = list(query.shape)
    shape[-1] = head_num * dv if layout == "BSH" else dv
    return query.new_empty(shape)


def _lengths(name: str, value) -> Optional[Sequence[int]]:
    """A per-batch length argument as a list of ints (a tuple or a 1-D integer tensor works too)."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        if value.dim() != 1 or value.dtype.is_floating_point or value.dtype.is_complex:
            raise ValueError(f"opennsa: {name} must be a list of per-batch lengths (or a 1-D integer tensor), "
                             f"got a {value.dtype} tensor of shape {tuple(value.shape)}")
        value = value.tolist()
    try:
        return [int(x) for x in value]
    except TypeError:
        raise ValueError(f"opennsa: {name} must be a list of per-batch lengths, got {value!r}") from None


def npu_nsa_select_attention_infer(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                   topk_indices: torch.Tensor, scale_value: float, head_num: int,
                                   key_value_head_num: int, select_block_size: int, select_block_count: int,
                                   page_block_size: int, *, layout: str = "BSND",
                                   atten_mask: Optional[torch.Tensor] = None,
                                   block_table: Optional[torch.Tensor] = None,
                                   actual_seq_qlen: Optional[Sequence[int]] = None,
                                   actual_seq_kvlen: Optional[Sequence[int]] = None) -> torch.Tensor:
    """One decoding step of the selected attention: each query token attends to the cached keys of
    the blocks its top-k slots name, read from the paged caches through block_table. Returns the
    output, shaped as query with the value's head dim.

    layout 'BSND': query [B, S, N1, Dk], topk_indices [B, S, N2, k] (or [B, N2, k] when S = 1);
    'BSH': query [B, S, N1*Dk]; 'TND': query [T, N1, Dk], topk_indices [T, N2, k]. key
    [numBlocks, page_block_size, N2, Dk] or [numBlocks, page_block_size, N2*Dk], value likewise
    with Dv <= Dk; block_table [B, maxBlocks] int32 (required); float16 / bfloat16 (also float32,
    float64). actual_seq_kvlen: the cached tokens L_b of each batch, new tokens included (required);
    actual_seq_qlen: the query tokens Q_b of each batch (default 1 each); token s of a batch sees
    positions p < L_b - (Q_b - 1 - s). -1 marks an empty slot; a block named twice counts twice.
    Rows s >= Q_b (BSND / BSH) are zero. atten_mask is reserved and never read. Raises ValueError
    with the library's message on bad input (shapes, lengths, indices, block-table entries).
    """
    return select_attention_infer(query, key, value, topk_indices, float(scale_value), int(head_num),
                                  int(key_value_head_num), int(select_block_size), int(select_block_count),
                                  int(page_block_size), layout=str(layout), atten_mask=atten_mask,
                                  block_table=block_table,
                                  actual_seq_qlen=_lengths("actual_seq_qlen", actual_seq_qlen),
                                  actual_seq_kvlen=_lengths("actual_seq_kvlen", actual_seq_kvlen))
