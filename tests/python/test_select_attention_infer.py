"""opennsa.npu_nsa_select_attention_infer against a plain-PyTorch float64 oracle over the paged
caches (every layout, draft tokens, empty and duplicate slots, shuffled pages), errors, opcheck."""

import math

import pytest
import torch

import opennsa

TOL = {torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float32: 2e-5}


def make_case(seed, *, layout="BSND", dtype=torch.bfloat16, kv=(70, 33), q=(1, 1), n1=8, n2=2, dk=24, dv=16,
              sel=16, k=4, page=16, rank4=False, topk3=False, pass_q=True):
    g = torch.Generator().manual_seed(seed)
    b = len(kv)
    pages_of = [math.ceil(length / page) for length in kv]
    n_pages = sum(pages_of) + 2
    perm = torch.randperm(n_pages, generator=g).tolist()
    table = torch.full((b, max(pages_of) + 1), -3, dtype=torch.int32)  # unused entries: never read
    nxt = 0
    for i, n in enumerate(pages_of):
        table[i, :n] = torch.tensor(perm[nxt:nxt + n], dtype=torch.int32)
        nxt += n
    key = torch.randn(n_pages, page, n2, dk, generator=g).to(dtype)
    value = torch.randn(n_pages, page, n2, dv, generator=g).to(dtype)
    s_max = max(q)
    queries = torch.randn(b, s_max, n1, dk, generator=g).to(dtype)
    topk = torch.full((b, s_max, n2, k), -1, dtype=torch.int32)
    for i in range(b):
        blocks = math.ceil(kv[i] / sel)
        topk[i, :q[i]] = torch.randint(-1, blocks, (q[i], n2, k), generator=g, dtype=torch.int32)
        topk[i, :q[i], :, -1] = topk[i, :q[i], :, 0]  # a duplicate slot
    case = dict(key=key, value=value, table=table, query=queries, topk=topk, kv=list(kv), q=list(q), n1=n1, n2=n2,
                sel=sel, k=k, page=page, layout=layout, dv=dv)
    # The call's tensors in the requested layout.
    if layout == "TND":
        case["q_in"] = torch.cat([queries[i, :q[i]] for i in range(b)])
        case["topk_in"] = torch.cat([topk[i, :q[i]] for i in range(b)])
    elif layout == "BSH":
        case["q_in"] = queries.reshape(b, s_max, n1 * dk)
        case["topk_in"] = topk
    else:
        case["q_in"] = queries
        case["topk_in"] = topk
    if topk3:
        case["topk_in"] = topk[:, 0]
    case["k_in"] = key if rank4 else key.reshape(n_pages, page, n2 * dk)
    case["v_in"] = value if rank4 else value.reshape(n_pages, page, n2 * dv)
    case["q_lens"] = list(q) if pass_q else None
    return case


def reference(c, scale):
    """float64, [B, S, N1, Dv]; rows s >= Q_b and heads that see nothing are 0."""
    b, s_max, n1, _ = c["query"].shape
    g = n1 // c["n2"]
    out = torch.zeros(b, s_max, n1, c["dv"], dtype=torch.float64)
    for i in range(b):
        length, qn = c["kv"][i], c["q"][i]
        rows = torch.arange(length)
        pages = c["table"][i, rows // c["page"]].long()
        k = c["key"][pages, rows % c["page"]].double()      # [L, N2, Dk]
        v = c["value"][pages, rows % c["page"]].double()
        for s in range(qn):
            end = length - (qn - 1 - s)
            for h in range(n1):
                n2 = h // g
                pos = [x * c["sel"] + r for x in c["topk"][i, s, n2].tolist() if x >= 0
                       for r in range(c["sel"]) if x * c["sel"] + r < end]
                if not pos:
                    continue
                idx = torch.tensor(pos)
                sc = scale * (k[idx, n2] @ c["query"][i, s, h].double())
                out[i, s, h] = torch.softmax(sc, 0) @ v[idx, n2]
    return out


def call(c, scale, **kw):
    return opennsa.npu_nsa_select_attention_infer(
        c["q_in"], c["k_in"], c["v_in"], c["topk_in"], scale, c["n1"], c["n2"], c["sel"], c["k"], c["page"],
        layout=c["layout"], block_table=c["table"], actual_seq_qlen=c["q_lens"], actual_seq_kvlen=c["kv"], **kw)


def as_bsnd(c, out):
    b, s_max, n1, _ = c["query"].shape
    if c["layout"] == "TND":
        full = torch.zeros(b, s_max, n1, c["dv"], dtype=out.dtype)
        t = 0
        for i, qn in enumerate(c["q"]):
            full[i, :qn] = out[t:t + qn]
            t += qn
        return full
    return out.reshape(b, s_max, n1, c["dv"])


def check_close(got, ref, tol):
    err = (got.double() - ref).norm() / max(ref.norm().item(), 1e-6)
    max_err = (got.double() - ref).abs().max() / max(ref.abs().max().item(), 1e-6)
    assert err <= tol and max_err <= 4 * tol, (err.item(), max_err.item())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("layout", ["BSND", "BSH", "TND"])
@pytest.mark.parametrize("drafts", [False, True])
def test_matches_reference(dtype, layout, drafts):
    c = make_case(3, layout=layout, dtype=dtype, q=(3, 2) if drafts else (1, 1), rank4=layout == "BSND")
    scale = c["query"].shape[-1] ** -0.5
    out = call(c, scale)
    assert out.dtype == dtype and out.shape[:-1] == c["q_in"].shape[:-1]
    check_close(as_bsnd(c, out), reference(c, scale), TOL[dtype])


def test_rows_past_the_query_length_are_zero_and_topk_3d():
    c = make_case(5, q=(2, 1))
    out = call(c, 0.3)
    assert torch.all(out[1, 1] == 0)
    c = make_case(6, q=(1, 1), topk3=True, pass_q=False)
    check_close(call(c, 0.3), reference(c, 0.3), TOL[torch.bfloat16])


def test_not_differentiable_and_no_grad_needed():
    c = make_case(7)
    c["q_in"].requires_grad_(True)
    with torch.no_grad():
        out = call(c, 0.2)
    assert not out.requires_grad


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(table=None), "blockTableOptional is required"),
    (lambda c: c.update(kv=None), "actualKvSeqLenOptional is required"),
    (lambda c: c["topk_in"].__setitem__((0, 0, 0, 0), 5), "topkIndices[0, 0, 0, 0] = 5 is out of range [-1, 5)"),
    (lambda c: c["table"].__setitem__((1, 0), 99), "blockTableOptional[1, 0] = 99 is not a page of key"),
    (lambda c: c.update(layout="BNSD"), "layoutOptional = \"BNSD\""),
    (lambda c: c.update(kv=[70]), "actualKvSeqLenOptional: 1 entries"),
])
def test_errors_name_the_argument(mutate, message):
    c = make_case(9)
    mutate(c)
    with pytest.raises(ValueError) as info:
        call(c, 0.5)
    assert message in str(info.value)


@pytest.mark.skipif(not hasattr(torch.library, "opcheck"), reason="torch.library.opcheck needs torch >= 2.4")
@pytest.mark.parametrize("layout", ["BSND", "TND"])
def test_opcheck(layout):
    c = make_case(11, layout=layout, q=(2, 1))
    torch.library.opcheck(torch.ops.opennsa.select_attention_infer.default,
                          (c["q_in"], c["k_in"], c["v_in"], c["topk_in"], 0.25, c["n1"], c["n2"], c["sel"], c["k"],
                           c["page"]),
                          dict(layout=layout, block_table=c["table"], actual_seq_qlen=c["q"], actual_seq_kvlen=c["kv"]))
