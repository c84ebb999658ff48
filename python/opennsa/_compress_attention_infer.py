"""The compress attention infer's torch operator (the CPU kernel is
python/csrc/compress_attention_infer.cpp): its fake kernel and the torch_npu-style function
npu_nsa_compress_attention_infer. Not differentiable (a decoding step)."""

from typing import Optional, Sequence, Tuple

import torch

from ._select_attention_infer import _lengths
from ._library import register_fake

compress_attention_infer = torch.ops.opennsa.compress_attention_infer.default


@register_fake("compress_attention_infer")
def _compress_attention_infer_fake(query, key, value, scale_value, head_num, key_value_head_num, select_block_size,
                                   select_block_count, page_block_size, compress_block_size, compress_stride, *,
                                   layout="TND", atten_mask=None, block_table=None, topk_mask=None,
                                   actual_seq_qlen=None, actual_cmp_seq_kvlen=None, actual_sel_seq_kvlen=None):
    rank = 4 if layout == "BSND" else 3
    torch._check(query.dim() == rank,
                 lambda: f"opennsa: query has shape {tuple(query.shape)}; expected rank {rank} (layout {layout})")
    dv = value.shape[3] if value.dim() == 4 else value.shape[2] // key_value_head_num
    lead = tuple(query.shape[:-2])
    out = query.new_empty(lead + (query.shape[-2], dv))
    topk = query.new_empty(lead + (key_value_head_num, select_block_count), dtype=torch.int32)
    return out, topk


def npu_nsa_compress_attention_infer(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                     scale_value: float, head_num: int, key_value_head_num: int,
                                     select_block_size: int, select_block_count: int, page_block_size: int,
                                     compress_block_size: int, compress_stride: int, *, layout: str = "TND",
                                     atten_mask: Optional[torch.Tensor] = None,
                                     block_table: Optional[torch.Tensor] = None,
                                     topk_mask: Optional[torch.Tensor] = None,
                                     actual_seq_qlen: Optional[Sequence[int]] = None,
                                     actual_cmp_seq_kvlen: Optional[Sequence[int]] = None,
                                     actual_sel_seq_kvlen: Optional[Sequence[int]] = None
                                     ) -> Tuple[torch.Tensor, torch.Tensor]:
    """One decoding step of the compressed attention over a paged compressed cache. Returns
    (output, topk_indices): output like query with Dv, topk_indices [T, N2, k] (TND) or
    [B, Q, N2, k] (BSND) int32, block indices relative to the sequence (-1: empty slot).

    query TND [T, N1, Dk] (T = sum of the query lengths) or BSND [B, Q, N1, Dk]; key
    [numBlocks, page_block_size, N2*Dk] and value [numBlocks, page_block_size, N2*Dv]: the paged
    compressed cache; block_table [B, maxBlocks] int32 (required). Per-batch lengths (not
    cumulative): actual_seq_qlen (query tokens, default 1 each), actual_cmp_seq_kvlen (compressed
    tokens, required), actual_sel_seq_kvlen (raw tokens: with atten_mask, whose contents are never
    read, draft tokens see only the compressed tokens whose window ends at or before them).
    topk_mask is reserved and not read. The first block and the last two of the compressed span
    are always selected first. Raises ValueError with the library's message on bad input.
    """
    return compress_attention_infer(
        query, key, value, float(scale_value), int(head_num), int(key_value_head_num), int(select_block_size),
        int(select_block_count), int(page_block_size), int(compress_block_size), int(compress_stride),
        layout=str(layout), atten_mask=atten_mask, block_table=block_table, topk_mask=topk_mask,
        actual_seq_qlen=_lengths("actual_seq_qlen", actual_seq_qlen),
        actual_cmp_seq_kvlen=_lengths("actual_cmp_seq_kvlen", actual_cmp_seq_kvlen),
        actual_sel_seq_kvlen=_lengths("actual_sel_seq_kvlen", actual_sel_seq_kvlen))
