"""opennsa.npu_nsa_compress_attention_infer against a plain-PyTorch float64 oracle (attention over
the paged compressed cache, importance scores, forced blocks, top-k checked set-wise), both layouts,
draft tokens, torch_npu's signature, opcheck, and errors."""

import inspect

import pytest
import torch

import opennsa

TOL = {torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float32: 2e-5}


def compressed_count(s, l, d):
    return 0 if s < l else (s - l) // d + 1


def make_case(seed, *, layout="TND", q_lens=(1, 1), raw=(300, 70), n1=8, n2=2, dk=16, dv=12, l=8, d=4, sel=16,
              k=5, page=16, dtype=torch.float32, mask=False):
    gen = torch.Generator().manual_seed(seed)
    c_lens = [compressed_count(L, l, d) for L in raw]
    pages = [-(-c // page) for c in c_lens]
    total = sum(pages) + 2
    perm = torch.randperm(total, generator=gen).tolist()
    table = torch.full((len(raw), max(pages)), -1, dtype=torch.int32)
    nxt = 0
    for b, p in enumerate(pages):
        table[b, :p] = torch.tensor(perm[nxt:nxt + p], dtype=torch.int32)
        nxt += p
    key = torch.randn(total, page, n2 * dk, generator=gen).to(dtype)
    value = torch.randn(total, page, n2 * dv, generator=gen).to(dtype)
    if layout == "TND":
        query = torch.randn(sum(q_lens), n1, dk, generator=gen).to(dtype)
    else:
        query = torch.randn(len(raw), max(q_lens), n1, dk, generator=gen).to(dtype)
    return dict(query=query, key=key, value=value, scale=dk ** -0.5, n1=n1, n2=n2, sel=sel, k=k, page=page, l=l,
                d=d, layout=layout, atten_mask=torch.zeros(1, dtype=torch.bool) if mask else None, block_table=table,
                q_lens=list(q_lens), c_lens=c_lens, raw=list(raw))


def run_ours(c):
    return opennsa.npu_nsa_compress_attention_infer(
        c["query"], c["key"], c["value"], c["scale"], c["n1"], c["n2"], c["sel"], c["k"], c["page"], c["l"], c["d"],
        layout=c["layout"], atten_mask=c["atten_mask"], block_table=c["block_table"], actual_seq_qlen=c["q_lens"],
        actual_cmp_seq_kvlen=c["c_lens"], actual_sel_seq_kvlen=c["raw"])


def batch_rows(c, b):
    """Batch b's query rows as (tensor index prefix, s) pairs."""
    if c["layout"] == "TND":
        start = sum(c["q_lens"][:b])
        return [(start + s,) for s in range(c["q_lens"][b])]
    return [(b, s) for s in range(c["q_lens"][b])]


def reference(c):
    """float64: per computed row the output [N1, Dv], the block scores [N2, NS] and NS."""
    n1, n2, l, d, sel = c["n1"], c["n2"], c["l"], c["d"], c["sel"]
    g, m, n = n1 // n2, sel // d, l // d
    dk = c["query"].shape[-1]
    dv = c["value"].shape[-1] // n2
    page = c["page"]
    scale = float(torch.tensor(c["scale"], dtype=torch.float32))
    keys = c["key"].double().reshape(-1, n2, dk)
    values = c["value"].double().reshape(-1, n2, dv)
    rows = {}
    for b, cl in enumerate(c["c_lens"]):
        j = torch.arange(cl)
        slots = c["block_table"][b].long()[j // page] * page + j % page
        kb, vb = keys[slots], values[slots]                              # [C, N2, D]
        ns = 0 if cl == 0 else -(-((cl - 1) * d + l) // sel)
        qn = c["q_lens"][b]
        for s, idx in enumerate(batch_rows(c, b)):
            vis = cl
            if c["atten_mask"] is not None:
                end = c["raw"][b] - qn + s + 1
                vis = 0 if end < l else min(cl, (end - l) // d + 1)
            q = c["query"][idx].double()                                 # [N1, Dk]
            out = torch.zeros(n1, dv, dtype=torch.float64)
            psum = torch.zeros(n2, cl, dtype=torch.float64)
            if vis > 0:
                kk = kb[:vis].repeat_interleave(g, dim=1)                # [V, N1, Dk]
                p = torch.softmax(torch.einsum("hd,jhd->hj", q, kk) * scale, dim=-1)
                out = torch.einsum("hj,jhd->hd", p, vb[:vis].repeat_interleave(g, dim=1))
                psum[:, :vis] = p.view(n2, g, vis).sum(1)
            score = torch.zeros(n2, ns, dtype=torch.float64)
            for blk in range(ns):
                for t in range(m + n - 1):
                    x = (blk + 1) * m - t
                    if 0 <= x < cl:
                        score[:, blk] += min(t + 1, n, m + n - 1 - t) * psum[:, x]
            rows[idx] = (out, score, ns)
    return rows


def check(c):
    out, topk = run_ours(c)
    q = c["query"]
    assert out.dtype == q.dtype and topk.dtype == torch.int32
    assert out.shape == q.shape[:-1] + (c["value"].shape[-1] // c["n2"],)
    assert topk.shape == q.shape[:-2] + (c["n2"], c["k"])
    rows = reference(c)
    got = torch.stack([out[idx].double() for idx in rows])
    want = torch.stack([r[0] for r in rows.values()])
    err = (got - want).norm() / want.norm()
    assert err <= TOL[q.dtype], f"relative Frobenius error {err:.3g}"
    assert (got - want).abs().max() / want.abs().max() <= 4 * TOL[q.dtype]
    kc = c["k"]
    for idx, (_, score, ns) in rows.items():
        forced = sorted({x for x in (0, ns - 2, ns - 1) if 0 <= x < ns})
        kept = min(ns, kc)
        for h in range(c["n2"]):
            sel = topk[idx][h].tolist()
            where = f"row {idx} kv head {h}: {sel}"
            assert sel[kept:] == [-1] * (kc - kept), where
            assert len(set(sel[:kept])) == kept and all(0 <= x < ns for x in sel[:kept]), where
            nf = min(len(forced), kept)
            assert sel[:nf] == forced[:nf], where
            rest = sorted((score[h, x].item() for x in range(ns) if x not in forced), reverse=True)
            if kept > nf:
                kth = rest[kept - nf - 1]
                assert all(score[h, x].item() >= kth - 1e-5 * max(1.0, kth) for x in sel[nf:kept]), where
    # Rows that are not computed (BSND s >= Q_b): output 0, topk -1.
    if c["layout"] == "BSND":
        for b, qn in enumerate(c["q_lens"]):
            assert (out[b, qn:] == 0).all() and (topk[b, qn:] == -1).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("layout", ["TND", "BSND"])
@pytest.mark.parametrize("drafts", [False, True])
def test_matches_reference(dtype, layout, drafts):
    q_lens = (3, 1, 2) if drafts else (1, 1, 1)
    check(make_case(11, layout=layout, q_lens=q_lens, raw=(1100, 41, 9), dtype=dtype, mask=drafts))


def test_group_of_sixteen_heads_and_a_short_sequence():
    # C_b = 0 (a sequence shorter than l): output 0, every slot -1.
    c = make_case(12, q_lens=(1, 1, 1), raw=(5000, 3, 70), n1=32, n2=2, dk=64, dv=32, page=64, k=16)
    check(c)
    out, topk = run_ours(c)
    assert (out[1] == 0).all() and (topk[1] == -1).all()


def test_signature_is_torch_npus():
    sig = inspect.signature(opennsa.npu_nsa_compress_attention_infer)
    names = ["query", "key", "value", "scale_value", "head_num", "key_value_head_num", "select_block_size",
             "select_block_count", "page_block_size", "compress_block_size", "compress_stride", "layout",
             "atten_mask", "block_table", "topk_mask", "actual_seq_qlen", "actual_cmp_seq_kvlen",
             "actual_sel_seq_kvlen"]
    assert list(sig.parameters) == names
    kw = [p.name for p in sig.parameters.values() if p.kind == inspect.Parameter.KEYWORD_ONLY]
    assert kw == names[11:]
    assert sig.parameters["layout"].default == "TND"
    assert all(sig.parameters[x].default is None for x in names[12:])
    schema = torch.ops.opennsa.compress_attention_infer.default._schema
    assert [a.name for a in schema.arguments] == names
    assert [a.name for a in schema.arguments if a.kwarg_only] == names[11:]
    assert schema.arguments[11].default_value == "TND" and len(schema.returns) == 2


def test_lengths_as_tensors_and_tuples():
    c = make_case(13)
    ref_out, ref_topk = run_ours(c)
    c["c_lens"] = torch.tensor(c["c_lens"])
    c["q_lens"] = tuple(c["q_lens"])
    out, topk = run_ours(c)
    assert torch.equal(out, ref_out) and torch.equal(topk, ref_topk)


@pytest.mark.skipif(not hasattr(torch.library, "opcheck"), reason="torch.library.opcheck needs torch >= 2.4")
@pytest.mark.parametrize("layout", ["TND", "BSND"])
def test_opcheck(layout):
    c = make_case(14, layout=layout, q_lens=(2, 1), raw=(200, 40), mask=True)
    torch.library.opcheck(torch.ops.opennsa.compress_attention_infer.default,
                          (c["query"], c["key"], c["value"], c["scale"], c["n1"], c["n2"], c["sel"], c["k"],
                           c["page"], c["l"], c["d"]),
                          dict(layout=layout, atten_mask=c["atten_mask"], block_table=c["block_table"],
                               actual_seq_qlen=c["q_lens"], actual_cmp_seq_kvlen=c["c_lens"],
                               actual_sel_seq_kvlen=c["raw"]))


def test_errors_name_the_argument():
    c = make_case(15)
    c["block_table"][1, 0] = 999
    with pytest.raises(ValueError, match=r"blockTableOptional\[1, 0\] = 999 is not a page"):
        run_ours(c)
    c = make_case(15)
    c["c_lens"] = None
    with pytest.raises(ValueError, match="actualCmpKvSeqLenOptional is required"):
        run_ours(c)
    c = make_case(15)
    c["layout"] = "BSH"
    with pytest.raises(ValueError, match='layoutOptional = "BSH" is not supported'):
        run_ours(c)
    c = make_case(15, q_lens=(2, 1), mask=True)
    c["raw"] = None
    with pytest.raises(ValueError, match="actualSelKvSeqLenOptional is absent"):
        run_ours(c)
    c = make_case(15)
    c["c_lens"] = 7                      # not a list: the message says these are per-batch lengths
    with pytest.raises(ValueError, match="actual_cmp_seq_kvlen must be a list of per-batch lengths"):
        run_ours(c)
