"""Sliding-window attention, built exactly from the selected attention (window_calls): blocks of b
keys, b the largest divisor of w up to 32, on block grids shifted per query residue mod b so that
every window is whole blocks. O(T * w) work and O(T * w / b) index memory, never a T x T mask; the
selected attention's fused backward, GQA, varlen batches, dtypes, fp32 accumulation and bitwise
determinism come with it. No kernel, fake kernel or autograd of its own: the selected attention's
(and index_select / index_copy's) serve, so torch.compile traces through."""

import operator
from typing import List, Optional, Sequence

import torch

from . import _select_attention as _select
from ._compress_attention import _seq_list


def _cumulative(name: str, value, rows: int) -> Optional[List[int]]:
    """Cumulative batch ends (no leading 0; a list, tuple or 1-D integer tensor), checked here
    because the window indices are built from them before the selected attention sees them."""
    if value is None:
        return None
    if not isinstance(value, torch.Tensor):  # ints only: 1.5 must not become batch end 1
        try:
            [operator.index(x) for x in value]
        except TypeError:
            raise ValueError(f"opennsa: {name} must be a list of ints (cumulative lengths), got {value!r}") from None
    ends = _seq_list(name, value)
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


def window_block_size(window_size: int) -> int:
    """Block size b of the exact construction: the largest divisor of w up to 32. Each b costs one
    call (O(T) packing and gradient sums each), and at Dk = Dv = 64 wider blocks fill the kernels'
    tiles better: w = 512, T = 4096, 16/1 heads, forward + backward took 0.65-0.68x the time
    with b = 32 as with b = 16 (bf16 and fp32), and b = 64 was slower than 32 (docs/PERFORMANCE.md)."""
    return max(b for b in range(1, min(32, window_size) + 1) if window_size % b == 0)


class _Call:
    """One selected-attention call of the construction: which query rows it computes, its
    cumulative query / key ends (gap batches of no query skip keys), its block indices and whether
    it needs the causal mask."""

    def __init__(self, causal):
        self.rows, self.topk, self.cu_q, self.cu_kv, self.causal = [], [], [], [], causal


def window_calls(seq_q: Sequence[int], seq_kv: Sequence[int], window_size: int, block: int) -> List[_Call]:
    """The calls that compute the window exactly with blocks of b keys (b divides w):

    - call 0, the batch's first min(w, S1) query positions i, whose window [0, i] starts at the
      batch: the batch's own block grid, blocks 0 .. ceil(w / b) - 1, causal mask;
    - call 1 + r for each residue r < b: the positions i >= w with i = r (mod b). Their windows
      [i - w + 1, i] start at = r + 1 (mod b), so on the grid that starts s_r = (r + 1) mod b keys
      into the batch they are exactly w / b whole blocks and need no mask. The shifted grid is a
      key batch starting s_r keys later, behind a gap batch without queries.
    """
    calls = [_Call(causal=True)] + [_Call(causal=False) for _ in range(block)]
    per_query = window_size // block
    early_blocks = -(-window_size // block)
    q_begin, kv_begin = 0, 0
    for q_end, kv_end in zip(seq_q, seq_kv):
        s1, s2 = q_end - q_begin, kv_end - kv_begin
        early = calls[0]
        n = min(window_size, s1)
        if n:
            early.rows.append(q_begin + torch.arange(n))
            blocks = torch.arange(early_blocks).masked_fill(torch.arange(early_blocks) * block >= s2, -1)
            early.topk.append(blocks.expand(n, early_blocks))
        early.cu_q.append((early.cu_q[-1] if early.cu_q else 0) + n)
        early.cu_kv.append(kv_end)
        for r in range(block):
            call = calls[1 + r]
            shift = (r + 1) % block
            first_pos = window_size + (r - window_size) % block
            pos = torch.arange(first_pos, max(s1, first_pos), block)
            count = pos.numel()
            last_q = call.cu_q[-1] if call.cu_q else 0
            call.cu_q += [last_q, last_q + count]
            call.cu_kv += [min(kv_begin + shift, kv_end), kv_end]  # gap batch, then the shifted batch
            if count:
                first = (pos - window_size + 1 - shift) // block
                blocks = first.unsqueeze(1) + torch.arange(per_query)
                shifted_blocks = -(-max(0, s2 - shift) // block)
                call.rows.append(q_begin + pos)
                call.topk.append(blocks.masked_fill(blocks >= shifted_blocks, -1))
        q_begin, kv_begin = q_end, kv_end
    return [c for c in calls if c.rows]


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
    block = window_block_size(window_size)
    n2 = key.shape[1]
    calls = window_calls(seq_q or [t1], seq_kv or [t2], window_size, block)
    if not calls:  # no query row in any batch: the selected attention writes the zeros
        empty = torch.full((t1, n2, 1), -1, dtype=torch.int32)
        return _select_attention(query, key, value, empty, scale_value, head_num, 1, seq_q, seq_kv, 2)
    # fp16 / bf16: the calls run on fp32 copies (the kernels compute in fp32 anyway; out and dq
    # round once either way), so that autograd sums the 1 + b calls' dk and dv in fp32 and they
    # round once, not once per call.
    dtype = query.dtype
    if dtype in (torch.float16, torch.bfloat16):
        query, key, value = query.float(), key.float(), value.float()
    rows = [torch.cat(call.rows) for call in calls]
    order = torch.cat(rows)
    # One gather of the query rows in call order, split into views: the backward is one cat and
    # one scatter, where a gather per call would scatter into a zeroed [T1, N1, Dk] gradient per
    # call and autograd would add those up (b + 1 full-size sums).
    parts = query.index_select(0, order).split([r.numel() for r in rows])
    outputs = []
    for call, part in zip(calls, parts):
        # One int32 index row per query, shared by every kv head (a stride-0 view).
        topk = torch.cat(call.topk).to(torch.int32)
        topk = topk.unsqueeze(1).expand(topk.shape[0], n2, topk.shape[1])
        outputs.append(_select_attention(part, key, value, topk, scale_value, head_num, block, call.cu_q, call.cu_kv,
                                         2 if call.causal else 0))
    # Every query row of a batch is computed by exactly one call; padding rows stay 0.
    result = query.new_zeros(t1, query.shape[1], value.shape[2])
    return result.index_copy(0, order, torch.cat(outputs)).to(dtype)


def _select_attention(query, key, value, topk, scale, head_num, block, seq_q, seq_kv, sparse_mode):
    args = (query, key, value, topk, float(scale), int(head_num), block, topk.shape[2], None, seq_q, seq_kv,
            sparse_mode)
    if _select.OP_AUTOGRAD or not torch.is_grad_enabled():
        return _select.select_attention(*args)[0]
    return _select._SelectAttentionFunction.apply(*args)[0]
