"""The NSA layer of opennsa.nn.NativeSparseAttention written in plain PyTorch: the same parameters,
the three branches by gathers, masks and softmax, the importance scores and the top-k ranking of
docs/spec, autograd for the backward. Runs in any dtype (float64 in the tests, as the oracle; the
layer's own dtype in bench/bench_layer.py, as the baseline to beat). Shares no code with the
operators it checks; the selected branch is tests/python/torch_reference.py's."""

import torch

from torch_reference import select_attention


def batch_ranges(seq_ends):
    """[(begin, end)] per batch from cumulative ends (no leading zero)."""
    return list(zip([0] + list(seq_ends[:-1]), seq_ends))


def compress(x, weight, l, d, seq_ends):
    """npu_nsa_compress: out[c] = sum_r weight[r, h] * x[begin + c*d + r, h] per batch, by gathering
    each window's l rows."""
    pieces = []
    for begin, end in batch_ranges(seq_ends):
        s = end - begin
        if s < l:
            continue
        count = (s - l) // d + 1
        rows = begin + (torch.arange(count).unsqueeze(1) * d + torch.arange(l))  # [C, l]
        pieces.append(torch.einsum("clhd,lh->chd", x[rows], weight))
    return torch.cat(pieces) if pieces else x.new_zeros(0, x.shape[1], x.shape[2])


def block_weights(m, n, count, blocks):
    """w(t) on the shifted compressed indices (J + 1) * m - t of every block J: [blocks, m + n - 1]
    index and weight tensors (weight 0 outside [0, count))."""
    tap = torch.arange(m + n - 1).view(1, -1)
    idx = (torch.arange(blocks).view(-1, 1) + 1) * m - tap
    inside = (idx >= 0) & (idx < count)
    w = torch.minimum(torch.minimum(tap + 1, torch.tensor(min(m, n))), m + n - 1 - tap)
    return idx.clamp(0, max(count - 1, 0)), w * inside


def decoding_rule(s, l, d, sel_size, local_blocks, blocks):
    """Per position i < s of a batch, the decoding compress attention's selection rule: the blocks
    J < NS(i) that intersect the span [0, (C_i - 1)*d + l) of the C_i = (i + 1 - l) // d + 1
    compressed tokens i sees (none while C_i = 0), of which block 0 and the last local_blocks are
    forced. Returns (rankable [s, blocks], forced [s, blocks]) bool."""
    i = torch.arange(s).view(s, 1)
    seen = torch.where(i + 1 >= l, (i + 1 - l) // d + 1, torch.zeros_like(i))
    span_end = (seen - 1) * d + l                                          # raw positions covered
    j = torch.arange(blocks).view(1, blocks)
    rankable = (seen > 0) & (j * sel_size < span_end)
    last = (span_end - 1) // sel_size                                      # NS(i) - 1
    forced = rankable & ((j == 0) | (last - j < local_blocks))
    return rankable, forced


def compressed_attention_topk(q, k_cmp, v_cmp, scale, l, d, sel_size, sel_count, local_blocks, seq_ends, cmp_ends):
    """The compressed branch (NSA causal rule j*d + l - 1 <= i) and its top-k by the decoding
    rule at every position (decoding_rule): forced blocks first (ascending), then descending
    importance, ties in ascending block index; -1 past the row's rankable blocks. Returns
    (o_cmp [T, N1, Dv], topk [T, N2, k] int32)."""
    t, n1, _ = q.shape
    n2, dv = v_cmp.shape[1], v_cmp.shape[2]
    g, m, n = n1 // n2, sel_size // d, l // d
    scale = float(torch.tensor(scale, dtype=torch.float32))  # the operators apply it as fp32
    out = q.new_zeros(t, n1, dv)
    topk = torch.full((t, n2, sel_count), -1, dtype=torch.int32)
    for (q0, q1), (c0, c1) in zip(batch_ranges(seq_ends), batch_ranges(cmp_ends)):
        s, c = q1 - q0, c1 - c0
        if s == 0 or c == 0:
            continue
        visible = torch.arange(c).view(1, c) * d + l - 1 <= torch.arange(s).view(s, 1)   # [S, C]
        kk = k_cmp[c0:c1].repeat_interleave(g, dim=1)
        vv = v_cmp[c0:c1].repeat_interleave(g, dim=1)
        scores = torch.einsum("ihd,jhd->hij", q[q0:q1], kk) * scale
        seen = visible.any(dim=1).view(1, s, 1)
        probs = torch.softmax(scores.masked_fill(~visible, float("-inf")).masked_fill(~seen, 0.0), dim=-1) * visible
        out[q0:q1] = torch.einsum("hij,jhd->ihd", probs, vv)
        blocks = -(-((c - 1) * d + l) // sel_size)
        rankable, forced = decoding_rule(s, l, d, sel_size, local_blocks, blocks)
        grouped = probs.detach().view(n2, g, s, c).sum(dim=1)                          # [N2, S, C]
        idx, w = block_weights(m, n, c, blocks)
        importance = (grouped[..., idx] * w).sum(-1)                                     # [N2, S, blocks]
        importance = importance.masked_fill(forced.unsqueeze(0), float("inf"))
        importance = importance.masked_fill(~rankable.unsqueeze(0), float("-inf"))
        order = torch.sort(importance, dim=-1, descending=True, stable=True).indices
        kept = min(blocks, sel_count)
        ranked = order[..., :kept].transpose(0, 1).to(torch.int32)                       # [S, N2, kept]
        count = rankable.sum(dim=1).view(s, 1, 1)
        topk[q0:q1, :, :kept] = torch.where(torch.arange(kept).view(1, 1, -1) < count, ranked, -1)
    return out, topk


def sliding_window(q, k, v, scale, window, seq_ends):
    """Causal window of `window` keys (i - w < p <= i) per batch, by gathering each query's w
    latest keys: O(T * w)."""
    t, n1, _ = q.shape
    n2, dv = v.shape[1], v.shape[2]
    g = n1 // n2
    out = q.new_zeros(t, n1, dv)
    for q0, q1 in batch_ranges(seq_ends):
        s = q1 - q0
        if s == 0:
            continue
        w = min(window, s)
        pos = torch.arange(s).view(s, 1) - (w - 1) + torch.arange(w).view(1, w)           # [S, w]
        valid = (pos >= 0).view(s, 1, 1, w)
        rows = q0 + pos.clamp(min=0)
        kw, vw = k[rows], v[rows]                                                        # [S, w, N2, D]
        qb = q[q0:q1].view(s, n2, g, -1)
        scores = torch.einsum("sngd,swnd->sngw", qb, kw) * scale
        probs = torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=-1)
        out[q0:q1] = torch.einsum("sngw,swnd->sngd", probs, vw).reshape(s, n1, dv)
    return out


def nsa_layer(layer, x, seq_ends, *, topk=None, return_topk=False):
    """What layer(x, cu_seqlens=seq_ends) computes, with the layer's parameters, in x's dtype.
    topk: selected blocks to use instead of the reference's own ranking (for low-precision runs,
    whose rounding may reorder near-equal blocks). The linear maps go through layer.linear, i.e.
    nn.Linear computed as the layer computes it (in fp32 for 16-bit inputs on CPUs without fast
    16-bit matmuls: the same cost for both in benchmarks; a no-op in float64)."""
    t = x.shape[0]
    l, d = layer.compress_block_size, layer.compress_stride
    q = layer.linear(layer.q_proj, x).view(t, layer.num_heads, layer.head_dim)
    k = layer.linear(layer.k_proj, x).view(t, layer.num_kv_heads, layer.head_dim)
    v = layer.linear(layer.v_proj, x).view(t, layer.num_kv_heads, layer.value_head_dim)
    gates = torch.sigmoid(layer.linear(layer.gate, x)).view(t, layer.num_heads, 3)
    cmp_ends, total, begin = [], 0, 0
    for end in seq_ends:
        total += (end - begin - l) // d + 1 if end - begin >= l else 0
        cmp_ends.append(total)
        begin = end
    k_cmp = compress(k, layer.compress_key, l, d, seq_ends)
    v_cmp = compress(v, layer.compress_value, l, d, seq_ends)
    o_cmp, own_topk = compressed_attention_topk(q, k_cmp, v_cmp, layer.scale, l, d, layer.select_block_size,
                                                layer.select_block_count, layer.forced_local_blocks, seq_ends,
                                                cmp_ends)
    topk = own_topk if topk is None else topk
    o_slc = select_attention(q, k, v, topk, layer.scale, layer.select_block_size, actual_seq_qlen=seq_ends,
                             actual_seq_kvlen=seq_ends, causal=True)
    o_win = sliding_window(q, k, v, layer.scale, layer.window_size, seq_ends)
    outputs = {"compressed": o_cmp, "selected": o_slc, "window": o_win}
    o = sum(gates[:, :, i:i + 1] * outputs[name]
            for i, name in enumerate(("compressed", "selected", "window")) if name in layer.branches_used)
    y = layer.linear(layer.o_proj, o.reshape(t, layer.num_heads * layer.value_head_dim))
    return (y, own_topk) if return_topk else y
