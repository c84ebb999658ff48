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
from torch.nn import functional as F

from ._compress import npu_nsa_compress
from ._compress_attention import npu_nsa_compress_attention
from ._compress_attention_infer import npu_nsa_compress_attention_infer
from ._compress_with_cache import npu_nsa_compress_infer
from ._gated_sum import gated_sum as _gated_sum
from ._kv_cache import PagedKVCache, compressed_count
from ._select_attention_infer import npu_nsa_select_attention_infer
from ._sliding_window import _cumulative, sliding_window_attention
from . import npu_nsa_select_attention

__all__ = ["NativeSparseAttention", "PagedKVCache", "compressed_seq_ends", "cpu_has_fast_matmul", "decoding_rule_topk",
           "forced_block_mask", "selection_block_counts"]

BRANCHES = ("compressed", "selected", "window")


def _torch_has_fast_matmul(dtype: torch.dtype) -> bool:
    try:
        mkldnn = torch.ops.mkldnn
        return bool(mkldnn._is_mkldnn_bf16_supported() if dtype == torch.bfloat16
                    else mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):
        return False


# Asked once, at import: torch.compile traces a dict lookup, not these non-tensor torch.ops calls.
_CPU_FAST_MATMUL = {dtype: _torch_has_fast_matmul(dtype) for dtype in (torch.bfloat16, torch.float16)}


def cpu_has_fast_matmul(dtype: torch.dtype) -> bool:
    """Whether torch's CPU matmuls run `dtype` at speed. For bf16 and fp16 that takes oneDNN's
    kernels for them (AVX-512 / AVX512_BF16 / AVX512_FP16 / AMX on x86, the BF16 extension on Arm);
    without them torch falls back to a slow path: on an AVX2 Zen 3, a bf16 [4096, 1024] x
    [1024, 1024] linear took 11 s forward + backward against 0.33 s for the same in fp32 with
    casts (docs/PERFORMANCE.md). Asked of torch's own checks; False when torch cannot say."""
    return _CPU_FAST_MATMUL.get(dtype, True)


def compressed_seq_ends(seq_ends: Sequence[int], compress_block_size: int, compress_stride: int) -> List[int]:
    """Cumulative compressed-token counts sum_{b' <= b} C(S_b'), C(S) = (S - l) // d + 1 for S >= l
    (the row offsets of npu_nsa_compress's output, which the compressed attention takes)."""
    ends, total, begin = [], 0, 0
    for end in seq_ends:
        total += compressed_count(end - begin, compress_block_size, compress_stride)
        ends.append(total)
        begin = end
    return ends


def selection_block_counts(positions: torch.Tensor, compress_block_size: int, compress_stride: int,
                           select_block_size: int) -> torch.Tensor:
    """NS(i) per query position i (batch-relative; < 0 for a padding row): the selection blocks that
    intersect the span of the compressed tokens i sees, the count the decoding compress attention
    ranks, ceil(((C_i - 1)*d + l) / l') with C_i = (i + 1 - l) // d + 1 visible compressed tokens,
    and 0 while C_i = 0."""
    l, d, sel = compress_block_size, compress_stride, select_block_size
    visible = torch.where(positions + 1 >= l, torch.div(positions + 1 - l, d, rounding_mode="floor") + 1, 0)
    return torch.where(visible > 0, torch.div((visible - 1) * d + l + sel - 1, sel, rounding_mode="floor"), 0)


def forced_block_mask(rows: int, blocks: int, compress_block_size: int, compress_stride: int,
                      select_block_size: int, local_blocks: int = 2) -> torch.Tensor:
    """topk_mask [rows, blocks] bool (top-left per batch) of the decoding rule: query position i
    forces block 0 and the last `local_blocks` blocks of its compressed span, NS(i) - 1 - r for
    r < local_blocks (those >= 0; NS from selection_block_counts). Columns past `blocks` are left out."""
    mask = torch.zeros(rows, blocks, dtype=torch.bool)
    if blocks == 0 or rows == 0:
        return mask
    mask[:, 0] = True
    counts = selection_block_counts(torch.arange(rows), compress_block_size, compress_stride, select_block_size)
    for r in range(local_blocks):
        block = counts - 1 - r
        keep = (block >= 0) & (block < blocks)
        mask[torch.arange(rows)[keep], block[keep]] = True
    return mask


def decoding_rule_topk(topk: torch.Tensor, counts: torch.Tensor, local_blocks: int) -> torch.Tensor:
    """The training compress attention's top-k [T, N2, k] (ranked over the batch's ceil(C_b / m)
    blocks, forced_block_mask passed) turned into the decoding operator's at every position: the
    forced blocks {0} and NS - 1 - r (r < local_blocks) that exist, ascending, then the ranked blocks
    below NS(i) in their order, then -1. Ranked blocks at or past NS(i) score 0 (no compressed token
    i sees maps onto them) and sort after every block below NS(i), so dropping them keeps the
    ranking; the one forced block that can lie past the batch's ceil(C_b / m) (NS - 1 at a batch's
    end) is restored by listing the forced set explicitly. See docs/spec/layer.md."""
    rows, heads, k = topk.shape
    ns = counts.view(rows, 1, 1)
    forced = torch.cat([torch.zeros(rows, 1, dtype=torch.long),
                        counts.view(rows, 1) - torch.arange(local_blocks, 0, -1).view(1, -1)], dim=1)
    forced_ok = (forced < counts.view(rows, 1)) & (forced >= 0)
    forced_ok[:, 1:] &= forced[:, 1:] > 0                      # block 0 listed once
    ranked = topk.long()
    ranked_ok = (ranked > 0) & (ranked < ns - local_blocks)
    blocks = torch.cat([forced.view(rows, 1, -1).expand(rows, heads, -1), ranked], dim=2)
    ok = torch.cat([forced_ok.view(rows, 1, -1).expand(rows, heads, -1), ranked_ok], dim=2)
    order = torch.argsort((~ok).to(torch.int8), dim=2, stable=True)[..., :k]
    kept = blocks.gather(2, order)
    return torch.where(ok.gather(2, order), kept, -1).to(torch.int32)


def batch_positions(seq_ends: Sequence[int], rows: int) -> torch.Tensor:
    """Each row's position in its batch; -1 for the padding rows past the last end."""
    positions = torch.full((rows,), -1, dtype=torch.long)
    begin = 0
    for end in seq_ends:
        positions[begin:end] = torch.arange(end - begin)
        begin = end
    return positions


class NativeSparseAttention(nn.Module):
    """NSA attention layer on [T, hidden_size] token rows (varlen batches via cu_seqlens).

    hidden_size, num_heads (N1 query heads), num_kv_heads (N2, N1 % N2 == 0: GQA), head_dim (Dk,
    default hidden_size // num_heads), value_head_dim (Dv <= Dk, default Dk), compress_block_size
    l and compress_stride d (d <= l), select_block_size l' (a multiple of d, >= l) and
    select_block_count k, window_size w (a query sees its w latest tokens, itself included),
    scale (default Dk ** -0.5), forced_local_blocks (the query's own selection block and the ones
    before it that are always selected, default 2; block 0 is always forced too), bias (of the
    q/k/v/output projections; the gates always have one), branches (a subset of BRANCHES for
    ablations, e.g. ("window",): the others are not computed and contribute 0),
    float32_projections (compute the linear maps of bf16 / fp16 inputs in fp32 and round the
    results to the input dtype: None, the default, does so on a CPU whose torch has no fast
    kernels for that dtype, see cpu_has_fast_matmul; True / False force it either way; the
    parameters and outputs keep their dtype).

    Parameters: q_proj, k_proj, v_proj, o_proj (nn.Linear), compress_key / compress_value [l, N2]
    (npu_nsa_compress's per-head window weights, initialised to the mean over the window), gate
    (nn.Linear to 3 * N1: compressed, selected, window gates, each a sigmoid).
    """

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int = 1, head_dim: Optional[int] = None,
                 value_head_dim: Optional[int] = None, compress_block_size: int = 32, compress_stride: int = 16,
                 select_block_size: int = 64, select_block_count: int = 16, window_size: int = 512,
                 scale: Optional[float] = None, forced_local_blocks: int = 2, bias: bool = False,
                 branches: Sequence[str] = BRANCHES, float32_projections: Optional[bool] = None, device=None,
                 dtype=None):
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
        if not (float32_projections is None or isinstance(float32_projections, bool)):
            raise ValueError(f"NativeSparseAttention: float32_projections = {float32_projections!r} must be None "
                             f"(automatic), True or False")
        self.float32_projections = float32_projections
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

    def projects_in_float32(self, x: torch.Tensor) -> bool:
        """Whether linear() computes x's projections in fp32 (see float32_projections)."""
        if x.dtype not in (torch.bfloat16, torch.float16) or self.float32_projections is False:
            return False
        return self.float32_projections is True or (x.device.type == "cpu" and not cpu_has_fast_matmul(x.dtype))

    def linear(self, module: nn.Linear, x: torch.Tensor, x_float32: Optional[torch.Tensor] = None) -> torch.Tensor:
        """module(x) as the layer computes its projections: in fp32 and rounded once to x's dtype
        when projects_in_float32(x) (x_float32: x already cast, to share one cast among several
        maps of the same rows), else module(x)."""
        if not self.projects_in_float32(x):
            return module(x)
        x32 = x.float() if x_float32 is None else x_float32
        bias = None if module.bias is None else module.bias.float()
        return F.linear(x32, module.weight.float(), bias).to(x.dtype)

    def project(self, x: torch.Tensor):
        """q [T, N1, Dk], k [T, N2, Dk], v [T, N2, Dv] and the gates [T, N1, 3] (sigmoid)."""
        t = x.shape[0]
        x32 = x.float() if self.projects_in_float32(x) else None
        q = self.linear(self.q_proj, x, x32).view(t, self.num_heads, self.head_dim)
        k = self.linear(self.k_proj, x, x32).view(t, self.num_kv_heads, self.head_dim)
        v = self.linear(self.v_proj, x, x32).view(t, self.num_kv_heads, self.value_head_dim)
        gates = torch.sigmoid(self.linear(self.gate, x, x32)).view(t, self.num_heads, 3)
        return q, k, v, gates

    def topk_mask(self, seq_ends: Sequence[int], cmp_ends: Sequence[int]) -> torch.Tensor:
        """The forced blocks over [longest batch, most selection blocks of a batch]."""
        starts = [0] + list(seq_ends[:-1])
        longest = max(e - s for s, e in zip(starts, seq_ends))
        m = self.select_block_size // self.compress_stride
        most_compressed = max(e - s for s, e in zip([0] + list(cmp_ends[:-1]), cmp_ends))
        return forced_block_mask(longest, -(-most_compressed // m), self.compress_block_size, self.compress_stride,
                                 self.select_block_size, self.forced_local_blocks)

    def branches(self, q, k, v, seq_ends: Sequence[int]):
        """{branch name: output [T, N1, Dv]} for the branches in use, and the selected blocks
        topk [T, N2, k] (None without the compressed and selected branches)."""
        out, topk, _ = self._branches(q, k, v, seq_ends)
        return out, topk

    def _branches(self, q, k, v, seq_ends: Sequence[int]):
        """branches(), plus the compressed keys and values (None when not computed), which
        prefill() stores in the cache."""
        l, d = self.compress_block_size, self.compress_stride
        out, topk, compressed = {}, None, None
        if "compressed" in self.branches_used or "selected" in self.branches_used:
            cmp_ends = compressed_seq_ends(seq_ends, l, d)
            k_cmp = npu_nsa_compress(k, self.compress_key, l, d, actual_seq_len=seq_ends)
            v_cmp = npu_nsa_compress(v, self.compress_value, l, d, actual_seq_len=seq_ends)
            compressed = (k_cmp, v_cmp)
            o_cmp, ranked, _, _ = npu_nsa_compress_attention(
                q, k_cmp, v_cmp, self.scale, self.num_heads, l, d, self.select_block_size,
                self.select_block_count, topk_mask=self.topk_mask(seq_ends, cmp_ends), actual_seq_qlen=seq_ends,
                actual_cmp_seq_kvlen=cmp_ends, sparse_mode=2)
            counts = selection_block_counts(batch_positions(seq_ends, q.shape[0]), l, d, self.select_block_size)
            topk = decoding_rule_topk(ranked, counts, self.forced_local_blocks)
            if "compressed" in self.branches_used:
                out["compressed"] = o_cmp
        if "selected" in self.branches_used:
            out["selected"], _, _ = npu_nsa_select_attention(
                q, k, v, topk, self.scale, self.num_heads, self.select_block_size, self.select_block_count,
                actual_seq_qlen=seq_ends, actual_seq_kvlen=seq_ends, sparse_mode=2)
        if "window" in self.branches_used:
            out["window"] = sliding_window_attention(q, k, v, self.scale, self.num_heads, self.window_size,
                                                     actual_seq_qlen=seq_ends, actual_seq_kvlen=seq_ends)
        return out, topk, compressed

    def forward(self, x: torch.Tensor, cu_seqlens=None) -> torch.Tensor:
        """x [T, hidden_size] -> [T, hidden_size]. cu_seqlens: cumulative batch ends (list, tuple
        or 1-D integer tensor; no leading 0 needed); tokens attend only within their batch."""
        seq_ends = self.seq_ends(x, cu_seqlens)
        q, k, v, gates = self.project(x)
        outputs, _ = self.branches(q, k, v, seq_ends)
        return self.output(outputs, gates)

    def output(self, outputs, gates: torch.Tensor) -> torch.Tensor:
        """The gated sum of the branch outputs and o_proj: [rows, hidden_size]."""
        rows = gates.shape[0]
        return self.linear(self.o_proj, gated_sum(outputs, gates).reshape(rows, self.num_heads * self.value_head_dim))

    # Decoding -----------------------------------------------------------------------------------

    def cache_config(self):
        """What a PagedKVCache depends on (a cache serves only layers that agree on it)."""
        return dict(num_kv_heads=self.num_kv_heads, head_dim=self.head_dim, value_head_dim=self.value_head_dim,
                    compress_block_size=self.compress_block_size, compress_stride=self.compress_stride)

    def new_cache(self, batch_size: int, max_seq_len: int, **options) -> "PagedKVCache":
        """PagedKVCache(self, batch_size, max_seq_len, **options) (page sizes, pool sizes)."""
        return PagedKVCache(self, batch_size, max_seq_len, **options)

    @torch.no_grad()
    def prefill(self, x: torch.Tensor, cache: "PagedKVCache", cu_seqlens=None) -> torch.Tensor:
        """forward(x, cu_seqlens) (the training path), which also starts the cache's sequences:
        batch b of cu_seqlens becomes sequence b (cu_seqlens needs cache.batch_size entries; an
        empty batch leaves its sequence as it is). Each non-empty batch's sequence must be empty
        (new, or release()d). Stores the raw K / V rows and the compressed ones."""
        seq_ends = self.seq_ends(x, cu_seqlens)
        self._check_cache(cache, x.dtype)
        if len(seq_ends) != cache.batch_size:
            raise ValueError(f"NativeSparseAttention.prefill: cu_seqlens has {len(seq_ends)} batches; the cache "
                             f"holds {cache.batch_size} sequences")
        begins = [0] + list(seq_ends[:-1])
        for b, (begin, end) in enumerate(zip(begins, seq_ends)):
            if end > begin and cache.lengths[b]:
                raise ValueError(f"NativeSparseAttention.prefill: sequence {b} already holds {cache.lengths[b]} "
                                 f"tokens; prefill starts sequences (step() extends them, release() empties them)")
        cache.check_room([end - begin for begin, end in zip(begins, seq_ends)])
        q, k, v, gates = self.project(x)
        outputs, _, compressed = self._branches(q, k, v, seq_ends)
        cmp_ends = compressed_seq_ends(seq_ends, self.compress_block_size, self.compress_stride)
        cmp_begins = [0] + cmp_ends[:-1]
        for b, (begin, end) in enumerate(zip(begins, seq_ends)):
            if end == begin:
                continue
            cache.append(b, k[begin:end], v[begin:end])
            if compressed is not None and cmp_ends[b] > cmp_begins[b]:
                rows = slice(cmp_begins[b], cmp_ends[b])
                cache.append_compressed(b, compressed[0][rows], compressed[1][rows])
        return self.output(outputs, gates)

    def step(self, x: torch.Tensor, cache: "PagedKVCache", sequences=None) -> torch.Tensor:
        """One decoding step: x [n, hidden_size] holds the next token of n of the cache's
        sequences (all B of them in order, or the distinct indices `sequences`, in that order: the
        others wait); appends their K / V to the cache, compresses every window that completes
        (npu_nsa_compress_infer), and returns the layer's output [n, hidden_size] for them:
        compressed attention and top-k over the compressed cache (npu_nsa_compress_attention_infer),
        selected attention over the raw cache (npu_nsa_select_attention_infer), the window as the
        same operator over w one-key blocks. Equals forward() on the whole sequences at these
        positions (the training path ranks with the decoding rule, docs/spec/layer.md)."""
        return self.step_with_topk(x, cache, sequences)[0]

    @torch.no_grad()
    def step_with_topk(self, x: torch.Tensor, cache: "PagedKVCache", sequences=None):
        """step(), and the blocks the selected branch used: topk [n, N2, k] int32 (None without the
        compressed and selected branches)."""
        self._check_cache(cache, x.dtype)
        seqs = cache.sequence_list(sequences)
        if x.dim() != 2 or x.shape != (len(seqs), self.hidden_size):
            raise ValueError(f"NativeSparseAttention.step: x has shape {tuple(x.shape)}; expected "
                             f"[{len(seqs)}, {self.hidden_size}] (one token per sequence stepped)")
        ranks = "compressed" in self.branches_used or "selected" in self.branches_used
        if ranks and self.forced_local_blocks != 2:
            raise ValueError(f"NativeSparseAttention.step: forced_local_blocks = {self.forced_local_blocks}; the "
                             f"decoding compress attention always forces the first and the last two blocks, so "
                             f"decoding needs forced_local_blocks = 2")
        q, k, v, gates = self.project(x)
        slots = cache.append_step(k, v, seqs)
        table, compressed_table, lengths, compressed_lengths = cache.tables(seqs)
        n1, n2, l, d = self.num_heads, self.num_kv_heads, self.compress_block_size, self.compress_stride
        out, topk = {}, None
        if ranks:
            flat = lambda pages: pages.view(-1, n2, pages.shape[-1])
            npu_nsa_compress_infer(cache.key, self.compress_key, slots, l, d, cache.page_size, block_table=table,
                                   actual_seq_len=lengths, cache=flat(cache.compressed_key))
            npu_nsa_compress_infer(cache.value, self.compress_value, slots, l, d, cache.page_size, block_table=table,
                                   actual_seq_len=lengths, cache=flat(cache.compressed_value))
            o_cmp, topk = npu_nsa_compress_attention_infer(
                q, cache.compressed_key, cache.compressed_value, self.scale, n1, n2, self.select_block_size,
                self.select_block_count, cache.compressed_page_size, l, d, layout="TND",
                block_table=compressed_table, actual_cmp_seq_kvlen=compressed_lengths)
            if "compressed" in self.branches_used:
                out["compressed"] = o_cmp
        if "selected" in self.branches_used:
            out["selected"] = npu_nsa_select_attention_infer(
                q, cache.key, cache.value, topk, self.scale, n1, n2, self.select_block_size,
                self.select_block_count, cache.page_size, layout="TND", block_table=table, actual_seq_kvlen=lengths)
        if "window" in self.branches_used:
            out["window"] = npu_nsa_select_attention_infer(
                q, cache.key, cache.value, cache.window_blocks(self.window_size, n2, seqs), self.scale, n1, n2, 1,
                self.window_size, cache.page_size, layout="TND", block_table=table, actual_seq_kvlen=lengths)
        return self.output(out, gates), topk

    def _check_cache(self, cache, dtype):
        if not isinstance(cache, PagedKVCache):
            raise ValueError(f"NativeSparseAttention: cache must be a PagedKVCache, got {type(cache).__name__}")
        cache.check_layer(self)
        if dtype != cache.dtype:
            raise ValueError(f"NativeSparseAttention: x is {dtype}; the cache holds {cache.dtype}")


def gated_sum(outputs, gates: torch.Tensor) -> torch.Tensor:
    """sum over the branches of gate * output; gates [T, N1, 3] in BRANCHES order. One fused
    operator each way (opennsa._gated_sum): one output per result instead of a temporary per
    multiply and add, rounded once in 16-bit dtypes."""
    used = [i for i, name in enumerate(BRANCHES) if name in outputs]
    return _gated_sum(gates, [outputs[BRANCHES[i]] for i in used], used)
