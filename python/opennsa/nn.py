"""opennsa.nn: Native Sparse Attention as a torch.nn.Module, built on OpenNSA's operators.

    layer = opennsa.nn.NativeSparseAttention(hidden_size=512, num_heads=8, num_kv_heads=2)
    y = layer(x, cu_seqlens=[300, 1024])          # x [T, hidden]; two batches of 300 and 724 tokens

The three branches (docs/spec/layer.md): compressed attention over the K and V compressions
(npu_nsa_compress, npu_nsa_compress_attention with the NSA causal rule, sparse_mode 2, which also
ranks the top-k selection blocks, the first block and the local ones forced), selected attention
over the raw tokens of those blocks (npu_nsa_select_attention), and the exact causal sliding
window (sliding_window_attention), mixed per token and query head by sigmoid gates.
"""

from typing import List, Optional, Sequence

import torch
from torch import nn

from ._compress import npu_nsa_compress
from ._compress_attention import npu_nsa_compress_attention
from ._sliding_window import _cumulative, sliding_window_attention
from . import npu_nsa_select_attention

__all__ = ["NativeSparseAttention", "compressed_seq_ends", "forced_block_mask"]

BRANCHES = ("compressed", "selected", "window")


def compressed_seq_ends(seq_ends: Sequence[int], compress_block_size: int, compress_stride: int) -> List[int]:
    """Cumulative compressed-token counts sum_{b' <= b} C(S_b'), C(S) = (S - l) // d + 1 for S >= l
    (the row offsets of npu_nsa_compress's output, which the compressed attention takes)."""
    ends, total, begin = [], 0, 0
    for end in seq_ends:
        s = end - begin
        if s >= compress_block_size:
            total += (s - compress_block_size) // compress_stride + 1
        ends.append(total)
        begin = end
    return ends


def forced_block_mask(rows: int, blocks: int, select_block_size: int, local_blocks: int,
                      first_block: bool = True) -> torch.Tensor:
    """topk_mask [rows, blocks] bool (top-left per batch): query position i forces block 0 and its
    `local_blocks` latest blocks floor(i / l') - r, r < local_blocks (those that exist)."""
    mask = torch.zeros(rows, blocks, dtype=torch.bool)
    if blocks == 0 or rows == 0:
        return mask
    own = torch.arange(rows) // select_block_size
    for r in range(local_blocks):
        block = own - r
        keep = (block >= 0) & (block < blocks)
        mask[torch.arange(rows)[keep], block[keep]] = True
    if first_block:
        mask[:, 0] = True
    return mask


class NativeSparseAttention(nn.Module):
    """NSA attention layer on [T, hidden_size] token rows (varlen batches via cu_seqlens).

    hidden_size, num_heads (N1 query heads), num_kv_heads (N2, N1 % N2 == 0: GQA), head_dim (Dk,
    default hidden_size // num_heads), value_head_dim (Dv <= Dk, default Dk), compress_block_size
    l and compress_stride d (d <= l), select_block_size l' (a multiple of d, >= l) and
    select_block_count k, window_size w (a query sees its w latest tokens, itself included),
    scale (default Dk ** -0.5), forced_local_blocks (the query's own selection block and the ones
    before it that are always selected, default 2; block 0 is always forced too), bias (of the
    q/k/v/output projections; the gates always have one), branches (a subset of BRANCHES for
    ablations, e.g. ("window",): the others are not computed and contribute 0).

    Parameters: q_proj, k_proj, v_proj, o_proj (nn.Linear), compress_key / compress_value [l, N2]
    (npu_nsa_compress's per-head window weights, initialised to the mean over the window), gate
    (nn.Linear to 3 * N1: compressed, selected, window gates, each a sigmoid).
    """

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int = 1, head_dim: Optional[int] = None,
                 value_head_dim: Optional[int] = None, compress_block_size: int = 32, compress_stride: int = 16,
                 select_block_size: int = 64, select_block_count: int = 16, window_size: int = 512,
                 scale: Optional[float] = None, forced_local_blocks: int = 2, bias: bool = False,
                 branches: Sequence[str] = BRANCHES, device=None, dtype=None):
        super().__init__()
        head_dim = hidden_size // num_heads if head_dim is None and num_heads > 0 else head_dim
        value_head_dim = head_dim if value_head_dim is None else value_head_dim
        sizes = dict(hidden_size=hidden_size, num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
                     value_head_dim=value_head_dim, compress_block_size=compress_block_size,
                     compress_stride=compress_stride, select_block_size=select_block_size,
                     select_block_count=select_block_count, window_size=window_size)
        for name, value in sizes.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"NativeSparseAttention: {name} = {value!r} must be an int >= 1")
        if num_heads % num_kv_heads:
            raise ValueError(f"NativeSparseAttention: num_heads = {num_heads} must be a multiple of "
                             f"num_kv_heads = {num_kv_heads} (GQA)")
        if value_head_dim > head_dim:
            raise ValueError(f"NativeSparseAttention: value_head_dim = {value_head_dim} must be <= head_dim = "
                             f"{head_dim} (the compressed attention needs Dv <= Dk)")
        if compress_stride > compress_block_size:
            raise ValueError(f"NativeSparseAttention: compress_stride = {compress_stride} must be <= "
                             f"compress_block_size = {compress_block_size}")
        if select_block_size % compress_stride or select_block_size < compress_block_size:
            raise ValueError(f"NativeSparseAttention: select_block_size = {select_block_size} must be a multiple "
                             f"of compress_stride = {compress_stride} and >= compress_block_size = "
                             f"{compress_block_size}")
        if not isinstance(forced_local_blocks, int) or forced_local_blocks < 0:
            raise ValueError(f"NativeSparseAttention: forced_local_blocks = {forced_local_blocks!r} must be an "
                             f"int >= 0")
        unknown = [b for b in branches if b not in BRANCHES]
        if unknown or not branches:
            raise ValueError(f"NativeSparseAttention: branches = {tuple(branches)!r}; expected a non-empty subset "
                             f"of {BRANCHES}")
        for name, value in sizes.items():
            setattr(self, name, value)
        self.branches_used = tuple(b for b in BRANCHES if b in branches)
        self.forced_local_blocks = forced_local_blocks
        self.scale = float(head_dim ** -0.5 if scale is None else scale)
        factory = dict(device=device, dtype=dtype)
        self.q_proj = nn.Linear(hidden_size, num_heads * head_dim, bias=bias, **factory)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * head_dim, bias=bias, **factory)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * value_head_dim, bias=bias, **factory)
        self.compress_key = nn.Parameter(torch.full((compress_block_size, num_kv_heads), 1.0 / compress_block_size,
                                                    **factory))
        self.compress_value = nn.Parameter(torch.full((compress_block_size, num_kv_heads),
                                                      1.0 / compress_block_size, **factory))
        self.gate = nn.Linear(hidden_size, 3 * num_heads, bias=True, **factory)
        self.o_proj = nn.Linear(num_heads * value_head_dim, hidden_size, bias=bias, **factory)

    def extra_repr(self) -> str:
        return (f"hidden_size={self.hidden_size}, heads={self.num_heads}/{self.num_kv_heads}, "
                f"head_dim={self.head_dim}/{self.value_head_dim}, compress={self.compress_block_size}/"
                f"{self.compress_stride}, select={self.select_block_size}x{self.select_block_count}, "
                f"window={self.window_size}, scale={self.scale:.6g}")

    def seq_ends(self, x: torch.Tensor, cu_seqlens) -> List[int]:
        """cu_seqlens as cumulative batch ends (default: one batch of all rows). A leading 0 is
        accepted (it is an empty first batch); rows past the last end are padding (output 0)."""
        if x.dim() != 2 or x.shape[1] != self.hidden_size:
            raise ValueError(f"NativeSparseAttention: x has shape {tuple(x.shape)}; expected [T, "
                             f"{self.hidden_size}]")
        if cu_seqlens is None:
            return [x.shape[0]]
        return _cumulative("cu_seqlens", cu_seqlens, x.shape[0])

    def project(self, x: torch.Tensor):
        """q [T, N1, Dk], k [T, N2, Dk], v [T, N2, Dv] and the gates [T, N1, 3] (sigmoid)."""
        t = x.shape[0]
        q = self.q_proj(x).view(t, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(t, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(t, self.num_kv_heads, self.value_head_dim)
        gates = torch.sigmoid(self.gate(x)).view(t, self.num_heads, 3)
        return q, k, v, gates

    def topk_mask(self, seq_ends: Sequence[int], cmp_ends: Sequence[int]) -> torch.Tensor:
        """The forced blocks over [longest batch, most selection blocks of a batch]."""
        starts = [0] + list(seq_ends[:-1])
        longest = max(e - s for s, e in zip(starts, seq_ends))
        m = self.select_block_size // self.compress_stride
        most_compressed = max(e - s for s, e in zip([0] + list(cmp_ends[:-1]), cmp_ends))
        return forced_block_mask(longest, -(-most_compressed // m), self.select_block_size,
                                 self.forced_local_blocks)

    def branches(self, q, k, v, seq_ends: Sequence[int]):
        """{branch name: output [T, N1, Dv]} for the branches in use, and the selected blocks
        topk [T, N2, k] (None without the compressed and selected branches)."""
        l, d = self.compress_block_size, self.compress_stride
        out, topk = {}, None
        if "compressed" in self.branches_used or "selected" in self.branches_used:
            cmp_ends = compressed_seq_ends(seq_ends, l, d)
            k_cmp = npu_nsa_compress(k, self.compress_key, l, d, actual_seq_len=seq_ends)
            v_cmp = npu_nsa_compress(v, self.compress_value, l, d, actual_seq_len=seq_ends)
            o_cmp, topk, _, _ = npu_nsa_compress_attention(
                q, k_cmp, v_cmp, self.scale, self.num_heads, l, d, self.select_block_size,
                self.select_block_count, topk_mask=self.topk_mask(seq_ends, cmp_ends), actual_seq_qlen=seq_ends,
                actual_cmp_seq_kvlen=cmp_ends, sparse_mode=2)
            if "compressed" in self.branches_used:
                out["compressed"] = o_cmp
        if "selected" in self.branches_used:
            out["selected"], _, _ = npu_nsa_select_attention(
                q, k, v, topk, self.scale, self.num_heads, self.select_block_size, self.select_block_count,
                actual_seq_qlen=seq_ends, actual_seq_kvlen=seq_ends, sparse_mode=2)
        if "window" in self.branches_used:
            out["window"] = sliding_window_attention(q, k, v, self.scale, self.num_heads, self.window_size,
                                                     actual_seq_qlen=seq_ends, actual_seq_kvlen=seq_ends)
        return out, topk

    def forward(self, x: torch.Tensor, cu_seqlens=None) -> torch.Tensor:
        """x [T, hidden_size] -> [T, hidden_size]. cu_seqlens: cumulative batch ends (list, tuple
        or 1-D integer tensor; no leading 0 needed); tokens attend only within their batch."""
        seq_ends = self.seq_ends(x, cu_seqlens)
        q, k, v, gates = self.project(x)
        outputs, _ = self.branches(q, k, v, seq_ends)
        return self.o_proj(gated_sum(outputs, gates).reshape(x.shape[0], self.num_heads * self.value_head_dim))


def gated_sum(outputs, gates: torch.Tensor) -> torch.Tensor:
    """sum over the branches of gate * output; gates [T, N1, 3] in BRANCHES order."""
    total = None
    for i, name in enumerate(BRANCHES):
        if name in outputs:
            term = gates[:, :, i:i + 1] * outputs[name]
            total = term if total is None else total + term
    return total
