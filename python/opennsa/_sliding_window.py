"""Sliding-window attention, built exactly from the selected attention: with selection blocks of
one token, a query's window of w keys is a list of w block indices (its last w positions), so
npu_nsa_select_attention computes the exact causal window in O(T * w) work and memory, with its
fused backward, GQA, varlen batches, dtypes and bitwise determinism. No new kernel, no fake kernel
or autograd of its own: both are the selected attention's (torch.compile traces through)."""

import operator
from typing import List, Optional, Sequence

import torch

from . import _select_attention as _select


def _cumulative(name: str, value, rows: int) -> Optional[List[int]]:
    """Cumulative batch ends (no leading 0; a list, tuple or 1-D integer tensor), checked here
    because the window indices are built from them before the selected attention sees them."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        if value.dim() != 1 or value.dtype.is_floating_point or value.dtype.is_complex:
            raise ValueError(f"opennsa: {name} must be a list of ints (or a 1-D integer tensor), got a "
                             f"{value.dtype} tensor of shape {tuple(value.shape)}")
        value = value.tolist()
    try:
        ends = [operator.index(x) for x in value]
    except TypeError:
        raise ValueError(f"opennsa: {name} must be a list of ints (cumulative lengths), got {value!r}") from None
    if not ends:
        raise ValueError(f"opennsa: {name} is empty; expected at least one batch")
    previous = 0
    for b, end in enumerate(ends):
        if end < previous:
            raise ValueError(f"opennsa: {name}[{b}] = {end} is below {name}[{b - 1}] = {previous} "
                             f"(cumulative lengths must not decrease, and start at >= 0)" if b else
                             f"opennsa: {name}[0] = {end} must be >= 0")
        previous = end
    if ends[-1] > rows:
        raise ValueError(f"opennsa: {name}[{len(ends) - 1}] = {ends[-1]} exceeds the {rows} rows of the tensor")
    return ends


def window_indices(seq_q: Sequence[int], seq_kv: Sequence[int], rows: int, window_size: int) -> torch.Tensor:
    """The selected attention's topk for the window: [rows, C] int32, C = min(w, longest query
    batch) (no query sees more keys than that), slot c of query position i holding key position
    i - C + 1 + c of its batch, -1 where that lies before the batch or past its keys; padding rows
    (past the last batch) all -1."""
    longest = max([e - s for s, e in zip([0] + list(seq_q[:-1]), seq_q)], default=0)
    slots = max(1, min(window_size, longest))
    offsets = torch.arange(slots, dtype=torch.int64) - (slots - 1)
    pieces, q_begin, kv_begin = [], 0, 0
    for q_end, kv_end in zip(seq_q, seq_kv):
        if q_end > q_begin:
            keys = torch.arange(q_end - q_begin, dtype=torch.int64).unsqueeze(1) + offsets
            keys = keys.masked_fill((keys < 0) | (keys >= kv_end - kv_begin), -1)
            pieces.append(keys.to(torch.int32))
        q_begin, kv_begin = q_end, kv_end
    if rows > q_begin:
        pieces.append(torch.full((rows - q_begin, slots), -1, dtype=torch.int32))
    return torch.cat(pieces) if pieces else torch.full((0, slots), -1, dtype=torch.int32)


def sliding_window_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale_value: float,
                             head_num: int, window_size: int, *,
                             actual_seq_qlen: Optional[Sequence[int]] = None,
                             actual_seq_kvlen: Optional[Sequence[int]] = None) -> torch.Tensor:
    """Causal sliding-window attention: query position i of a batch attends to the key positions
    p of the same batch with i - window_size < p <= i (w keys, its own included; top-left aligned
    per batch, as the selected attention's causal rule). query [T1, N1, Dk], key [T2, N2, Dk],
    value [T2, N2, Dv], layout TND, GQA (query head h uses kv head h // (N1 / N2)), Dk != Dv
    allowed, float16 / bfloat16 / float32 / float64 with fp32 accumulation. actual_seq_qlen /
    actual_seq_kvlen: cumulative lengths without a leading zero, both or neither (neither: one
    batch); query rows past the last batch are 0. Returns attention_out [T1, N1, Dv],
    differentiable with respect to query, key and value; bitwise identical for every thread
    count. Raises ValueError naming the parameter on bad input, before anything is computed."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, torch.Tensor) or t.dim() != 3:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"opennsa: sliding_window_attention: {name} has shape {shape}; expected rank 3 "
                             f"(layout TND)")
    window_size = int(window_size)
    if window_size < 1:
        raise ValueError(f"opennsa: sliding_window_attention: window_size = {window_size} must be >= 1")
    if (actual_seq_qlen is None) != (actual_seq_kvlen is None):
        raise ValueError("opennsa: sliding_window_attention: actual_seq_qlen and actual_seq_kvlen must be given "
                         "both or neither")
    t1, t2 = query.shape[0], key.shape[0]
    seq_q = _cumulative("actual_seq_qlen", actual_seq_qlen, t1)
    seq_kv = _cumulative("actual_seq_kvlen", actual_seq_kvlen, t2)
    if seq_q is not None and len(seq_q) != len(seq_kv):
        raise ValueError(f"opennsa: sliding_window_attention: actual_seq_qlen has {len(seq_q)} batches but "
                         f"actual_seq_kvlen has {len(seq_kv)}")
    topk = window_indices(seq_q or [t1], seq_kv or [t2], t1, window_size)
    # Every kv head reads the same window: a stride-0 view, no copy per head.
    topk = topk.unsqueeze(1).expand(t1, key.shape[1], topk.shape[1])
    out, _, _ = _select_attention(query, key, value, topk, float(scale_value), int(head_num), seq_q, seq_kv)
    return out


def _select_attention(query, key, value, topk, scale, head_num, seq_q, seq_kv):
    args = (query, key, value, topk, scale, head_num, 1, topk.shape[2], None, seq_q, seq_kv, 2)
    if _select.OP_AUTOGRAD or not torch.is_grad_enabled():
        return _select.select_attention(*args)
    return _select._SelectAttentionFunction.apply(*args)
