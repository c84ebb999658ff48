"""opennsa.npu_nsa_compress_attention against a plain-PyTorch float64 oracle (attention, head-major
statistics, importance scores and top-k checked set-wise, gradients through autograd), gradcheck,
opcheck, errors and the no-copy guarantee."""

import math
import re

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import opennsa

# docs/spec: (out tol, grads tol); the max-error bound is 4 * tol.
TOL = {torch.float16: (1e-3, 2e-3), torch.bfloat16: (8e-3, 1.6e-2), torch.float32: (2e-5, 2e-5)}


def compressed_count(s, l, d):
    return 0 if s < l else (s - l) // d + 1


def batch_bounds(t1, t2, cu_q, cu_c):
    if cu_q is None:
        return [(0, t1, 0, t2)]
    bounds, q0, k0 = [], 0, 0
    for q1, k1 in zip(cu_q, cu_c):
        bounds.append((q0, q1, k0, k1))
        q0, k0 = q1, k1
    return bounds


def reference(q, k, v, scale, l, d, sel, *, topk_mask=None, atten_mask=None, cu_q=None, cu_c=None, sparse_mode=1):
    """Plain PyTorch in the dtype of q (float64 in the tests): attention_out (differentiable), the
    log-sum-exp per (token, head) (-inf where nothing is visible) and, per batch, the block scores
    [N2, S1, NS] and forced flags [S1, NS]."""
    t1, n1, _ = q.shape
    t2, n2, dv = v.shape
    g = n1 // n2
    m, n = sel // d, l // d
    scale = float(torch.tensor(scale, dtype=torch.float32))  # applied as fp32
    pieces, lse, scores = [], torch.full((t1, n1), float("-inf"), dtype=q.dtype), []
    covered = 0
    for q0, q1, k0, k1 in batch_bounds(t1, t2, cu_q, cu_c):
        s1, c = q1 - q0, k1 - k0
        ns = -(-c // m)
        covered = max(covered, q1)
        if s1 == 0:
            scores.append(None)
            continue
        i = torch.arange(s1).view(s1, 1)
        j = torch.arange(c).view(1, c)
        if sparse_mode == 2:
            vis = j * d + l - 1 <= i
        elif atten_mask is not None:
            vis = atten_mask[:s1, :c] == 0
        else:
            vis = torch.ones(s1, c, dtype=torch.bool)
        kk = k[k0:k1].repeat_interleave(g, dim=1)
        vv = v[k0:k1].repeat_interleave(g, dim=1)
        s = torch.einsum("ihd,jhd->hij", q[q0:q1], kk) * scale
        s = s.masked_fill(~vis, float("-inf"))
        lse[q0:q1] = torch.logsumexp(s, dim=-1).transpose(0, 1).detach() if c else lse[q0:q1]
        seen = vis.any(dim=1).view(1, s1, 1)
        p = torch.softmax(s.masked_fill(~seen, 0.0), dim=-1) * vis          # empty rows: 0
        pieces.append(torch.einsum("hij,jhd->ihd", p, vv))
        psum = p.detach().view(n2, g, s1, c).sum(dim=1)                       # [N2, S1, C]
        jj = torch.arange(ns).view(ns, 1)
        tap = torch.arange(m + n - 1).view(1, -1)
        idx = (jj + 1) * m - tap
        inside = (idx >= 0) & (idx < c)
        w = torch.minimum(torch.minimum(tap + 1, torch.tensor(n)), m + n - 1 - tap) * inside
        sc = (psum[..., idx.clamp(0, max(c - 1, 0))] * w if c else psum.new_zeros(n2, s1, ns, m + n - 1)).sum(-1)
        forced = (topk_mask[:s1, :ns] != 0) if topk_mask is not None else torch.zeros(s1, ns, dtype=torch.bool)
        scores.append((sc, forced))
    if covered < t1:
        pieces.append(q.new_zeros(t1 - covered, n1, dv))
    return torch.cat(pieces, dim=0) if pieces else q.new_zeros(t1, n1, dv), lse, scores


def head_major_rows(stat, cu_q, t1, n1):
    """softmax_max / softmax_sum entry 0 as [T1, N1] per token from CANN's head-major layout."""
    flat = stat.reshape(t1 * n1, 8)[:, 0]
    out = torch.zeros(t1, n1, dtype=stat.dtype)
    q0 = 0
    for q1 in (cu_q if cu_q is not None else [t1]):
        s1 = q1 - q0
        for h in range(n1):
            out[q0:q1, h] = flat[q0 * n1 + h * s1: q0 * n1 + h * s1 + s1]
        q0 = q1
    return out


def check_topk(topk, scores, bounds, kcount):
    """docs/spec: forced blocks first (lowest, ascending); every other index has a reference score
    >= k-th - 1e-5 max(1, k-th), in descending order where scores differ by more than that;
    -1 past NS_b; padding rows all -1."""
    covered = 0
    for (q0, q1, _, _), entry in zip(bounds, scores):
        covered = max(covered, q1)
        if entry is None:
            continue
        sc, forced = entry
        n2, s1, ns = sc.shape
        kept = min(ns, kcount)
        for i in range(s1):
            f = forced[i].nonzero().flatten().tolist()
            for h in range(n2):
                got = topk[q0 + i, h].tolist()
                where = f"token {q0 + i} kv head {h}: {got}"
                assert got[kept:] == [-1] * (kcount - kept), where
                assert len(set(got[:kept])) == kept and all(0 <= x < ns for x in got[:kept]), where
                nf = min(len(f), kept)
                assert got[:nf] == f[:nf], where
                rest = [x for x in range(ns) if x not in f]
                r = kept - nf
                if r == 0:
                    continue
                vals = sorted((sc[h, i, x].item() for x in rest), reverse=True)
                kth = vals[r - 1]
                tol = 1e-5 * max(1.0, kth)
                prev = None
                for x in got[nf:kept]:
                    assert x not in f and sc[h, i, x].item() >= kth - tol, where
                    if prev is not None:
                        assert sc[h, i, x].item() <= sc[h, i, prev].item() + tol, where
                    prev = x
    assert (topk[covered:] == -1).all()


def make_case(seed, *, seq, n1, n2, dk, dv, l, d, sel, k, dtype=torch.float32, varlen=False, pad_q=0, mask=False,
              forced=0.0, sparse_mode=1):
    gen = torch.Generator().manual_seed(seed)
    c_lens = [compressed_count(s, l, d) for s in seq]
    t1, t2 = sum(seq) + pad_q, sum(c_lens) + (1 if varlen else 0)
    q = torch.randn(t1, n1, dk, generator=gen).to(dtype)
    key = torch.randn(t2, n2, dk, generator=gen).to(dtype)
    v = torch.randn(t2, n2, dv, generator=gen).to(dtype)
    max_s1 = max(seq) if varlen else t1
    max_c = max(c_lens) if varlen else t2
    m = sel // d
    atten_mask = (torch.rand(max_s1 + 1, max_c + 2, generator=gen) < 0.3) if mask else None
    topk_mask = (torch.rand(max_s1, -(-max_c // m) + 1, generator=gen) < forced) if forced else None
    cu_q = cu_c = None
    if varlen:
        cu_q = torch.tensor(seq).cumsum(0).tolist()
        cu_c = torch.tensor(c_lens).cumsum(0).tolist()
    return dict(q=q, k=key, v=v, scale=dk ** -0.5, n1=n1, l=l, d=d, sel=sel, kcount=k, atten_mask=atten_mask,
                topk_mask=topk_mask, cu_q=cu_q, cu_c=cu_c, sparse_mode=sparse_mode)


def run_ours(case, d_out):
    q, k, v = (case[x].detach().clone().requires_grad_(True) for x in ("q", "k", "v"))
    out, topk, smax, ssum = opennsa.npu_nsa_compress_attention(
        q, k, v, case["scale"], case["n1"], case["l"], case["d"], case["sel"], case["kcount"],
        topk_mask=case["topk_mask"], atten_mask=case["atten_mask"], actual_seq_qlen=case["cu_q"],
        actual_cmp_seq_kvlen=case["cu_c"], sparse_mode=case["sparse_mode"])
    out.backward(d_out)
    return out.detach(), topk, smax, ssum, q.grad, k.grad, v.grad


def run_reference(case, d_out):
    q, k, v = (case[x].detach().double().requires_grad_(True) for x in ("q", "k", "v"))
    out, lse, scores = reference(q, k, v, case["scale"], case["l"], case["d"], case["sel"],
                                 topk_mask=case["topk_mask"], atten_mask=case["atten_mask"], cu_q=case["cu_q"],
                                 cu_c=case["cu_c"], sparse_mode=case["sparse_mode"])
    out.backward(d_out.double())
    return out.detach(), lse, scores, q.grad, k.grad, v.grad


def assert_close(name, got, want, tol):
    err = got.double() - want
    ref_norm = want.norm().item()
    if ref_norm == 0:
        assert err.abs().max().item() == 0 if err.numel() else True, f"{name}: reference is 0"
        return
    rel_fro = err.norm().item() / ref_norm
    rel_max = err.abs().max().item() / want.abs().max().item()
    assert rel_fro <= tol and rel_max <= 4 * tol, f"{name}: rel Frobenius {rel_fro:.3g}, rel max {rel_max:.3g}, tol {tol}"


def check_case(case, dtype):
    t1, n1 = case["q"].shape[:2]
    dv = case["v"].shape[2]
    d_out = torch.randn(t1, n1, dv, generator=torch.Generator().manual_seed(5)).to(dtype)
    out, topk, smax, ssum, dq, dk, dv_ = run_ours(case, d_out)
    r_out, lse, scores, r_dq, r_dk, r_dv = run_reference(case, d_out)
    assert out.dtype == dtype and topk.dtype == torch.int32 and smax.dtype == ssum.dtype == torch.float32
    assert topk.shape == (t1, case["k"].shape[1], case["kcount"]) and smax.shape == (t1, n1, 8)
    tol_out, tol_grad = TOL[dtype]
    assert_close("out", out, r_out, tol_out)
    assert_close("dq", dq, r_dq, tol_grad)
    assert_close("dk", dk, r_dk, tol_grad)
    assert_close("dv", dv_, r_dv, tol_grad)
    # Statistics: CANN's head-major layout, the 8 entries of a row equal, log(sum) + max = lse.
    assert torch.equal(smax, smax[..., :1].expand_as(smax)) and torch.equal(ssum, ssum[..., :1].expand_as(ssum))
    mx = head_major_rows(smax, case["cu_q"], t1, n1).double()
    sm = head_major_rows(ssum, case["cu_q"], t1, n1).double()
    rows = torch.isfinite(lse)
    assert ((torch.log(sm) + mx)[rows] - lse[rows]).abs().max().item() <= 1e-3 if rows.any() else True
    assert (mx[~rows] == 0).all() and (sm[~rows] == 0).all() and (out[~rows] == 0).all()
    check_topk(topk, scores, batch_bounds(t1, case["k"].shape[0], case["cu_q"], case["cu_c"]), case["kcount"])


CASES = [
    ("nsa-layer-causal", dict(seq=[160], n1=8, n2=2, dk=32, dv=16, l=32, d=16, sel=64, k=3, sparse_mode=2)),
    ("mask-given", dict(seq=[70], n1=4, n2=1, dk=24, dv=24, l=8, d=4, sel=16, k=4, mask=True)),
    ("mask-absent-forced", dict(seq=[50], n1=6, n2=3, dk=16, dv=8, l=4, d=2, sel=6, k=5, forced=0.2)),
    ("varlen-causal-forced", dict(seq=[33, 0, 70, 5], n1=4, n2=2, dk=20, dv=12, l=6, d=3, sel=9, k=4, varlen=True,
                                  pad_q=3, forced=0.3, sparse_mode=2)),
    ("varlen-mask-g16", dict(seq=[40, 29], n1=16, n2=1, dk=16, dv=16, l=5, d=5, sel=10, k=2, varlen=True, mask=True)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name,shape", CASES, ids=[c[0] for c in CASES])
def test_matches_plain_pytorch(name, shape, dtype):
    check_case(make_case(sum(map(ord, name)), dtype=dtype, **shape), dtype)


def random_shape(seed):
    gen = torch.Generator().manual_seed(2000 + seed)
    r = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=gen))
    n2 = r(1, 3)
    d = r(1, 6)
    l = d * r(1, 3) + r(0, d - 1)
    sel = d * max(r(1, 4), -(-l // d))
    nbatch = r(1, 3)
    dk = r(1, 48)
    return dict(seq=[r(0, 90) for _ in range(nbatch)], n1=n2 * r(1, 5), n2=n2, dk=dk, dv=r(1, dk), l=l, d=d, sel=sel,
                k=r(1, 8), varlen=nbatch > 1 or r(0, 1) == 1, mask=r(0, 1) == 1, forced=0.2 * r(0, 1),
                sparse_mode=[0, 1, 2][r(0, 2)])


@pytest.mark.parametrize("seed", range(8))
def test_random_shapes_match_plain_pytorch(seed):
    shape = random_shape(seed)
    if not shape["varlen"]:
        shape["pad_q"] = 0
    dtype = [torch.float32, torch.bfloat16, torch.float16][seed % 3]
    check_case(make_case(seed, dtype=dtype, **shape), dtype)


GRADCHECK_CASES = [
    ("causal", dict(seq=[14], n1=2, n2=1, dk=5, dv=4, l=3, d=2, sel=4, k=2, sparse_mode=2)),
    ("mask", dict(seq=[9], n1=4, n2=2, dk=4, dv=3, l=2, d=1, sel=3, k=2, mask=True)),
    ("varlen-no-mask", dict(seq=[6, 0, 7], n1=3, n2=1, dk=4, dv=4, l=2, d=2, sel=4, k=3, varlen=True, pad_q=1)),
]


@pytest.mark.parametrize("name,shape", GRADCHECK_CASES, ids=[c[0] for c in GRADCHECK_CASES])
def test_gradcheck_fp64(name, shape):
    case = make_case(7, dtype=torch.float64, **shape)
    q, k, v = (case[x].requires_grad_(True) for x in ("q", "k", "v"))

    def f(q, k, v):
        return opennsa.npu_nsa_compress_attention(
            q, k, v, 0.7, case["n1"], case["l"], case["d"], case["sel"], case["kcount"],
            atten_mask=case["atten_mask"], actual_seq_qlen=case["cu_q"], actual_cmp_seq_kvlen=case["cu_c"],
            sparse_mode=case["sparse_mode"])[0]

    assert torch.autograd.gradcheck(f, (q, k, v), eps=1e-6, atol=1e-8, rtol=1e-6)


def opcheck_inputs(requires_grad):
    case = make_case(3, seq=[10, 12], n1=4, n2=2, dk=8, dv=6, l=4, d=2, sel=4, k=3, varlen=True, mask=True, forced=0.2)
    if requires_grad:
        for x in ("q", "k", "v"):
            case[x].requires_grad_(True)
    return case


@pytest.mark.skipif(not hasattr(torch.library, "opcheck"), reason="torch.library.opcheck needs torch >= 2.4")
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck_forward(requires_grad):
    c = opcheck_inputs(requires_grad)
    torch.library.opcheck(torch.ops.opennsa.compress_attention.default,
                          (c["q"], c["k"], c["v"], 0.5, 4, c["l"], c["d"], c["sel"], c["kcount"]),
                          dict(topk_mask=c["topk_mask"], atten_mask=c["atten_mask"], actual_seq_qlen=c["cu_q"],
                               actual_cmp_seq_kvlen=c["cu_c"], sparse_mode=1))


@pytest.mark.skipif(not hasattr(torch.library, "opcheck"), reason="torch.library.opcheck needs torch >= 2.4")
def test_opcheck_backward():
    c = opcheck_inputs(False)
    out, _, smax, ssum = opennsa.npu_nsa_compress_attention(
        c["q"], c["k"], c["v"], 0.5, 4, c["l"], c["d"], c["sel"], c["kcount"], atten_mask=c["atten_mask"],
        actual_seq_qlen=c["cu_q"], actual_cmp_seq_kvlen=c["cu_c"])
    torch.library.opcheck(torch.ops.opennsa.compress_attention_grad.default,
                          (torch.randn_like(out), c["q"], c["k"], c["v"], out, smax, ssum, 0.5, 4, c["l"], c["d"],
                           c["sel"], c["kcount"]),
                          dict(atten_mask=c["atten_mask"], actual_seq_qlen=c["cu_q"], actual_cmp_seq_kvlen=c["cu_c"],
                               sparse_mode=1))


def test_only_attention_out_is_differentiable():
    c = opcheck_inputs(True)
    out, topk, smax, ssum = opennsa.npu_nsa_compress_attention(c["q"], c["k"], c["v"], 0.5, 4, c["l"], c["d"],
                                                               c["sel"], c["kcount"], sparse_mode=2)
    assert out.requires_grad and not topk.requires_grad and not smax.requires_grad and not ssum.requires_grad
    (out.square().sum() + smax.sum() + ssum.sum()).backward()  # statistics contribute nothing
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in (c["q"], c["k"], c["v"]))


class OpRecorder(TorchDispatchMode):
    """Records every ATen / custom operator that reaches the dispatcher."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def strided_copy(x, transpose_dims=(0, 1)):
    """The same values as x, in a non-contiguous view (permuted storage with a gap and an offset)."""
    a, b = transpose_dims
    shape = list(x.shape)
    shape[a], shape[b] = shape[b], shape[a]
    big = torch.zeros([s + 1 for s in shape], dtype=x.dtype)
    view = big[1:, 1:, 1:].transpose(a, b)
    view.copy_(x)
    assert not view.is_contiguous() and view.storage_offset() > 0
    return view


def test_inputs_are_read_in_place_without_copies():
    c = make_case(5, seq=[40], n1=4, n2=2, dk=16, dv=8, l=4, d=2, sel=8, k=3)
    base = (c["q"], c["k"], c["v"])
    for inputs in [base, tuple(strided_copy(x) for x in base)]:
        mask = torch.zeros(41, 20, dtype=torch.bool)[:, 1:]  # a strided view too
        with OpRecorder() as rec:
            out, topk, smax, ssum = opennsa.npu_nsa_compress_attention(*inputs, 0.3, 4, 4, 2, 8, 3, atten_mask=mask)
        assert rec.ops == ["opennsa.compress_attention.default"], rec.ops
        with OpRecorder() as rec:
            torch.ops.opennsa.compress_attention_grad(out, *inputs, out, smax, ssum, 0.3, 4, 4, 2, 8, 3)
        assert rec.ops == ["opennsa.compress_attention_grad.default"], rec.ops
        for o in (out, topk, smax, ssum):
            assert o.is_contiguous()
            assert all(o.untyped_storage().data_ptr() != x.untyped_storage().data_ptr() for x in inputs)


def test_strided_inputs_give_identical_results():
    c = make_case(11, seq=[30, 25], n1=6, n2=3, dk=12, dv=10, l=4, d=2, sel=8, k=4, varlen=True, dtype=torch.bfloat16,
                  sparse_mode=2, forced=0.2)
    d_out = torch.randn(c["q"].shape[0], 6, 10).to(torch.bfloat16)
    a = run_ours(c, d_out)
    for x, dims in zip(("q", "k", "v"), [(0, 1), (1, 2), (0, 2)]):
        c[x] = strided_copy(c[x], dims)
    b = run_ours(c, strided_copy(d_out, (0, 2)))
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_deterministic_across_threads():
    c = make_case(13, seq=[200], n1=8, n2=2, dk=32, dv=16, l=8, d=4, sel=16, k=4, sparse_mode=2)
    d_out = torch.randn(200, 8, 16)
    before = opennsa.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            opennsa.set_num_threads(threads)
            results.append(run_ours(c, d_out))
    finally:
        opennsa.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_meta_tensors_propagate_shapes():
    q = torch.empty(10, 4, 24, device="meta", dtype=torch.bfloat16)
    k = torch.empty(30, 2, 24, device="meta", dtype=torch.bfloat16)
    v = torch.empty(30, 2, 16, device="meta", dtype=torch.bfloat16)
    out, topk, smax, ssum = torch.ops.opennsa.compress_attention(q, k, v, 0.5, 4, 32, 16, 64, 5)
    assert out.shape == (10, 4, 16) and out.dtype == torch.bfloat16 and out.device.type == "meta"
    assert topk.shape == (10, 2, 5) and topk.dtype == torch.int32
    assert smax.shape == ssum.shape == (10, 4, 8) and smax.dtype == torch.float32
    dq, dk, dv = torch.ops.opennsa.compress_attention_grad(out, q, k, v, out, smax, ssum, 0.5, 4, 32, 16, 64, 5)
    assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == v.shape


def test_empty_query():
    q, k, v = torch.empty(0, 2, 8), torch.randn(16, 1, 8), torch.randn(16, 1, 4)
    out, topk, smax, ssum = opennsa.npu_nsa_compress_attention(q, k, v, 1.0, 2, 4, 2, 8, 2)
    assert out.shape == (0, 2, 4) and topk.shape == (0, 1, 2)
    dq, dk, dv = torch.ops.opennsa.compress_attention_grad(out, q, k, v, out, smax, ssum, 1.0, 2, 4, 2, 8, 2)
    assert dq.shape == (0, 2, 8) and (dk == 0).all() and (dv == 0).all()


# ---------------------------------------------------------------------------------------------
# Bad input: ValueError carrying the library's one-line message.

def call_with(**changes):
    c = make_case(17, seq=[20], n1=4, n2=2, dk=8, dv=8, l=4, d=2, sel=8, k=2)
    args = dict(query=c["q"], key=c["k"], value=c["v"], scale_value=0.5, head_num=4, compress_block_size=4,
                compress_stride=2, select_block_size=8, select_block_count=2)
    kwargs = {n: changes.pop(n) for n in ("topk_mask", "atten_mask", "actual_seq_qlen", "actual_cmp_seq_kvlen",
                                          "actual_sel_seq_kvlen", "sparse_mode") if n in changes}
    args.update(changes)
    return opennsa.npu_nsa_compress_attention(*args.values(), **kwargs)


@pytest.mark.parametrize("changes,message", [
    (dict(head_num=3), r"headNum = 3 must equal query.shape\[1\] = 4"),
    (dict(sparse_mode=3), r"sparseMode = 3 is not supported"),
    (dict(compress_stride=0), r"compressStride = 0 must be >= 1"),
    (dict(compress_block_size=1), r"compressBlockSize = 1 must be >= compressStride = 2"),
    (dict(select_block_size=3), r"selectBlockSize = 3 must be >= compressBlockSize = 4"),
    (dict(select_block_size=9), r"selectBlockSize = 9 must be a multiple of compressStride = 2"),
    (dict(select_block_count=0), r"selectBlockCount = 0 must be >= 1"),
    (dict(actual_seq_qlen=[20]), r"give both or neither"),
    (dict(actual_seq_qlen=[10, 20], actual_cmp_seq_kvlen=[5, 2]), r"actualCmpSeqKvLenOptional\[1\] = 2 is less than"),
    (dict(atten_mask=torch.zeros(20, 9)), r"attenMaskOptional: dtype fp32 must be bool or uint8"),
    (dict(atten_mask=torch.zeros(19, 9, dtype=torch.bool)), r"attenMaskOptional: shape \[19, 9\] does not cover"),
    (dict(topk_mask=torch.zeros(20, 1, dtype=torch.bool)), r"topkMaskOptional: shape \[20, 1\] does not cover"),
    (dict(key=torch.randn(9, 2, 7)), r"key.shape\[2\] = 7 must equal 8"),
    (dict(value=torch.randn(9, 2, 9)), r"value.shape\[2\] = 9 \(Dv\) must be <= query.shape\[2\] = 8"),
    (dict(query=torch.randn(20, 4, 8, 1)), r"query has shape \[20, 4, 8, 1\]; expected rank 3"),
    (dict(value=torch.randn(9, 2, 8).to(torch.float16)), r"value: dtype fp16 must be fp32"),
])
def test_bad_input_raises_value_error(changes, message):
    with pytest.raises(ValueError, match=message) as info:
        call_with(**changes)
    text = str(info.value)
    assert re.search(message, text.splitlines()[0]), text


def test_bad_seqlen_type():
    with pytest.raises(ValueError, match="actual_cmp_seq_kvlen"):
        call_with(actual_seq_qlen=[20], actual_cmp_seq_kvlen=9.5)
