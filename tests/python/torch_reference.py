"""Selected attention in plain PyTorch: gather the selected key/value blocks, matmul, masked
softmax, matmul; autograd gives the backward. This is what a user would write without a fused
kernel. The tests run it in float64 as the oracle (SPEC section 7); bench/compare_torch.py runs
it in the input dtype as the baseline to beat."""

import torch


def batch_bounds(t1, t2, actual_seq_qlen=None, actual_seq_kvlen=None):
    """[(q_begin, q_end, kv_begin, kv_end)] per batch, from cumulative lengths (no leading zero)."""
    if actual_seq_qlen is None:
        return [(0, t1, 0, t2)]
    bounds, q0, k0 = [], 0, 0
    for q1, k1 in zip(actual_seq_qlen, actual_seq_kvlen):
        bounds.append((q0, q1, k0, k1))
        q0, k0 = q1, k1
    return bounds


def _visible_scores(q, k, topk_indices, scale, block_size, q0, q1, k0, k1, causal):
    """One batch: scores [tq, N2, G, C*bs] of each query head against its selected keys, -inf where
    a key is not visible, and the positions [tq, N2, C*bs] of those keys in the batch."""
    tq, s2 = q1 - q0, k1 - k0
    n1, dk = q.shape[1], q.shape[2]
    n2 = k.shape[1]
    c = topk_indices.shape[2]
    blocks = topk_indices[q0:q1].long()                                  # [tq, N2, C]
    pos = blocks.unsqueeze(-1) * block_size + torch.arange(block_size)   # [tq, N2, C, bs]
    visible = (blocks.unsqueeze(-1) >= 0) & (pos < s2)
    if causal:
        visible &= pos <= torch.arange(tq).view(tq, 1, 1, 1)
    pos = pos.clamp(0, s2 - 1).reshape(tq, n2, c * block_size)
    visible = visible.reshape(tq, n2, 1, c * block_size)
    k_sel = k[k0:k1][pos, torch.arange(n2).view(1, n2, 1)]               # [tq, N2, C*bs, Dk]
    q_b = q[q0:q1].reshape(tq, n2, n1 // n2, dk)
    scores = torch.matmul(q_b, k_sel.transpose(-1, -2)) * scale
    return scores.masked_fill(~visible, float("-inf")), pos


def select_attention(query, key, value, topk_indices, scale, block_size, *, actual_seq_qlen=None,
                     actual_seq_kvlen=None, causal=True, compute_dtype=None):
    """attention_out [T1, N1, Dv] (rows past the last batch are 0), differentiable in query, key
    and value. compute_dtype: dtype of the arithmetic (default: the input dtype)."""
    dtype = compute_dtype or query.dtype
    q, k, v = query.to(dtype), key.to(dtype), value.to(dtype)
    t1, n1, _ = q.shape
    t2, n2, dv = v.shape
    pieces = []
    covered = 0
    for q0, q1, k0, k1 in batch_bounds(t1, t2, actual_seq_qlen, actual_seq_kvlen):
        if q1 == q0:
            continue
        covered = q1
        if k1 == k0:  # no keys: every slot must be -1; the rows are empty
            pieces.append(q.new_zeros(q1 - q0, n1, dv))
            continue
        scores, pos = _visible_scores(q, k, topk_indices, scale, block_size, q0, q1, k0, k1, causal)
        v_sel = v[k0:k1][pos, torch.arange(n2).view(1, n2, 1)]              # [tq, N2, C*bs, Dv]
        visible = scores != float("-inf")
        scores = scores.masked_fill(~visible.any(-1, keepdim=True), 0.0)    # empty rows: no NaN
        probs = torch.softmax(scores, dim=-1) * visible                      # empty rows: all 0
        pieces.append(torch.matmul(probs, v_sel).reshape(q1 - q0, n1, dv))
    if covered < t1:  # padding rows past the last batch
        pieces.append(q.new_zeros(t1 - covered, n1, dv))
    return torch.cat(pieces, dim=0)


def softmax_logsumexp(query, key, topk_indices, scale, block_size, *, actual_seq_qlen=None,
                      actual_seq_kvlen=None, causal=True):
    """float64 log-sum-exp of the visible scores per (token, head); -inf for empty rows."""
    q, k = query.double(), key.double()
    t1, n1, _ = q.shape
    lse = torch.full((t1, n1), float("-inf"), dtype=torch.float64)
    for q0, q1, k0, k1 in batch_bounds(t1, k.shape[0], actual_seq_qlen, actual_seq_kvlen):
        if q1 > q0 and k1 > k0:
            scores, _ = _visible_scores(q, k, topk_indices, scale, block_size, q0, q1, k0, k1, causal)
            lse[q0:q1] = torch.logsumexp(scores, dim=-1).reshape(q1 - q0, n1)
    return lse
