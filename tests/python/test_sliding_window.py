"""opennsa.sliding_window_attention against a float64 dense band-mask oracle (outputs and
gradients), gradcheck, torch.compile, validation (ValueError naming the parameter, inputs
untouched), bitwise determinism across thread counts, and the O(T * w) index size."""

import pytest
import torch

import opennsa
from opennsa._sliding_window import window_block_size, window_calls
from test_compress_attention import TOL, assert_close


def bits(t):
    """The raw bits, so that NaN payloads and -0 compare exactly."""
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def oracle(q, k, v, scale, window, seq_q, seq_kv):
    """Dense scores per batch, masked to the band i - w < p <= i (and p < S2): float64 oracle."""
    t1, n1, _ = q.shape
    n2, dv = v.shape[1], v.shape[2]
    out = q.new_zeros(t1, n1, dv)
    for (q0, q1), (k0, k1) in zip(zip([0] + seq_q[:-1], seq_q), zip([0] + seq_kv[:-1], seq_kv)):
        s1, s2 = q1 - q0, k1 - k0
        if s1 == 0 or s2 == 0:
            continue
        i = torch.arange(s1).view(s1, 1)
        p = torch.arange(s2).view(1, s2)
        band = (p <= i) & (p > i - window)
        kk = k[k0:k1].repeat_interleave(n1 // n2, dim=1)
        vv = v[k0:k1].repeat_interleave(n1 // n2, dim=1)
        scores = torch.einsum("ihd,jhd->hij", q[q0:q1], kk) * scale
        seen = band.any(dim=1).view(1, s1, 1)
        probs = torch.softmax(scores.masked_fill(~band, float("-inf")).masked_fill(~seen, 0.0), -1) * band
        out[q0:q1] = torch.einsum("hij,jhd->ihd", probs, vv)
    return out


def make(seed, seq_q, seq_kv, n1, n2, dk, dv, pad=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    t1, t2 = sum(seq_q) + pad, sum(seq_kv) + pad
    q = torch.randn(t1, n1, dk, generator=gen).to(dtype)
    k = torch.randn(t2, n2, dk, generator=gen).to(dtype)
    v = torch.randn(t2, n2, dv, generator=gen).to(dtype)
    grad = torch.randn(t1, n1, dv, generator=gen).to(dtype)
    cum = lambda s: torch.tensor(s).cumsum(0).tolist()
    return q, k, v, grad, cum(seq_q), cum(seq_kv)


CASES = [
    # name, seq_q, seq_kv, N1, N2, Dk, Dv, window, padding rows
    ("one-batch-mha", [70], [70], 4, 4, 16, 16, 9, 0),
    ("gqa-dk-ne-dv", [100], [100], 8, 2, 24, 12, 32, 0),
    ("varlen-empty-pad", [33, 0, 50, 4], [33, 0, 50, 4], 6, 3, 20, 8, 7, 3),
    ("window-1", [40], [40], 2, 1, 8, 8, 1, 0),
    ("window-past-batch", [20, 45], [20, 45], 16, 1, 16, 16, 1000, 0),
    ("shifted-grids", [150, 0, 97], [150, 0, 97], 4, 2, 16, 8, 24, 2),  # w = 24: b = 24, residue calls
    ("shifted-grids-3-blocks", [150, 0, 97], [150, 0, 97], 4, 2, 16, 8, 96, 2),  # b = 32, 3 blocks a query
    ("shifted-grids-prime", [60], [60], 2, 1, 8, 8, 7, 0),               # b = 7
    ("shifted-q-ne-kv", [80, 50], [60, 90], 4, 1, 8, 12, 16, 0),
    ("q-shorter-than-kv", [10, 30], [25, 20], 4, 2, 12, 12, 6, 2),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_matches_float64_oracle(case, dtype):
    name, seq_q, seq_kv, n1, n2, dk, dv, window, pad = case
    q, k, v, grad, cq, ckv = make(sum(map(ord, name)), seq_q, seq_kv, n1, n2, dk, dv, pad, dtype)
    inputs = [t.clone() for t in (q, k, v)]
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    out = opennsa.sliding_window_attention(*leaves, dk ** -0.5, n1, window, actual_seq_qlen=cq, actual_seq_kvlen=ckv)
    out.backward(grad)
    ref_leaves = [t.double().requires_grad_(True) for t in (q, k, v)]
    ref = oracle(*ref_leaves, dk ** -0.5, window, cq, ckv)
    ref.backward(grad.double())
    assert out.dtype == dtype and out.shape == (q.shape[0], n1, dv)
    tol_out, tol_grad = TOL[dtype]
    assert_close("out", out.detach(), ref.detach(), tol_out)
    for name_, got, want in zip(("dq", "dk", "dv"), leaves, ref_leaves):
        assert_close(name_, got.grad, want.grad, tol_grad)
    if pad:  # padding query rows: out 0
        assert (out[cq[-1]:] == 0).all()
    for before, after in zip(inputs, (q, k, v)):  # inputs bitwise unchanged
        assert torch.equal(bits(before), bits(after))


def test_no_varlen_is_one_batch_and_strided_views_are_read_in_place():
    q, k, v, grad, _, _ = make(3, [50], [50], 4, 2, 16, 16)
    qkv = torch.cat([q, k, v], dim=1)  # [T, 8, 16]; q, k, v as strided views of it
    out = opennsa.sliding_window_attention(qkv[:, :4], qkv[:, 4:6], qkv[:, 6:], 0.3, 4, 11)
    want = opennsa.sliding_window_attention(q, k, v, 0.3, 4, 11, actual_seq_qlen=[50], actual_seq_kvlen=[50])
    assert torch.equal(out, want)
    assert_close("out", out, oracle(q.double(), k.double(), v.double(), 0.3, 11, [50], [50]), TOL[torch.float32][0])


def test_gradcheck_fp64():
    q, k, v, _, cq, ckv = make(11, [9, 0, 7], [9, 0, 7], 4, 2, 5, 3, dtype=torch.float64)
    leaves = [t.requires_grad_(True) for t in (q, k, v)]
    torch.autograd.gradcheck(
        lambda q, k, v: opennsa.sliding_window_attention(q, k, v, 0.6, 4, 4, actual_seq_qlen=cq, actual_seq_kvlen=ckv),
        leaves)


def run_threads(threads, q, k, v, grad, cq, ckv):
    opennsa.set_num_threads(threads)
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    out = opennsa.sliding_window_attention(*leaves, 0.25, q.shape[1], 48, actual_seq_qlen=cq, actual_seq_kvlen=ckv)
    out.backward(grad)
    return [out.detach()] + [t.grad for t in leaves]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_bitwise_identical_for_1_2_3_threads(dtype):
    q, k, v, grad, cq, ckv = make(5, [150, 90], [150, 90], 8, 2, 32, 16, dtype=dtype)
    try:
        results = [run_threads(n, q, k, v, grad, cq, ckv) for n in (1, 2, 3)]
    finally:
        opennsa.set_num_threads(0)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(bits(a), bits(b))


def covered_keys(seq_q, seq_kv, window):
    """{query row: sorted key rows} that the construction's calls give each row (causal calls
    keep p <= i), built back from their rows, cumulative ends and block indices."""
    block = window_block_size(window)
    seen = {}
    for call in window_calls(seq_q, seq_kv, window, block):
        rows, topk = torch.cat(call.rows).tolist(), torch.cat(call.topk).tolist()
        q_begin, kv_begin, t = 0, 0, 0
        for q_end, kv_end in zip(call.cu_q, call.cu_kv):
            for j in range(q_end - q_begin):
                row, keys = rows[t], []
                for x in topk[t]:
                    if x >= 0:
                        keys += [kv_begin + x * block + c for c in range(block) if x * block + c < kv_end - kv_begin and
                                 (not call.causal or x * block + c <= j)]
                assert row not in seen, f"row {row} computed twice"
                seen[row] = sorted(keys)
                t += 1
            q_begin, kv_begin = q_end, kv_end
    return seen


@pytest.mark.parametrize("window,seq_q,seq_kv", [
    (512, [2000], [2000]), (48, [150, 150, 151, 400], [150, 150, 151, 400]), (7, [30, 61], [30, 61]),
    (17, [100], [100]), (12, [5, 40, 90], [5, 50, 70]), (1, [9], [9]),
])
def test_construction_gives_each_row_exactly_its_window(window, seq_q, seq_kv):
    seen = covered_keys(seq_q, seq_kv, window)
    q_begin, kv_begin = 0, 0
    for q_end, kv_end in zip(seq_q, seq_kv):
        for i in range(q_end - q_begin):
            want = [kv_begin + p for p in range(max(0, i - window + 1), min(i + 1, kv_end - kv_begin))]
            assert seen.get(q_begin + i, []) == want, f"row {q_begin + i}"
        q_begin, kv_begin = q_end, kv_end
    assert window_block_size(512) == 32 and window_block_size(48) == 24 and window_block_size(17) == 17
    assert window_block_size(1000) == 25 and window_block_size(64) == 32


def test_torch_compile_fullgraph():
    q, k, v, grad, cq, ckv = make(8, [30, 20], [30, 20], 4, 1, 8, 8)

    def f(q, k, v):
        return opennsa.sliding_window_attention(q, k, v, 0.5, 4, 5, actual_seq_qlen=cq, actual_seq_kvlen=ckv)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    eager = [t.clone().requires_grad_(True) for t in (q, k, v)]
    out = compiled(*leaves)
    out.backward(grad)
    want = f(*eager)
    want.backward(grad)
    assert torch.equal(out, want)
    for a, b in zip(leaves, eager):
        assert torch.equal(a.grad, b.grad)


BAD = [
    (dict(window_size=0), "window_size = 0 must be >= 1"),
    (dict(query=torch.zeros(4, 2)), "query has shape (4, 2); expected rank 3"),
    (dict(key=torch.zeros(4, 1, 8, 1)), "key has shape (4, 1, 8, 1); expected rank 3"),
    (dict(actual_seq_qlen=[4]), "actual_seq_qlen and actual_seq_kvlen must be given both or neither"),
    (dict(actual_seq_qlen=[3, 2], actual_seq_kvlen=[3, 4]), "actual_seq_qlen[1] = 2 is below actual_seq_qlen[0] = 3"),
    (dict(actual_seq_qlen=[-1], actual_seq_kvlen=[4]), "actual_seq_qlen[0] = -1 must be >= 0"),
    (dict(actual_seq_qlen=[5], actual_seq_kvlen=[4]), "actual_seq_qlen[0] = 5 exceeds the 4 rows"),
    (dict(actual_seq_qlen=[2, 4], actual_seq_kvlen=[4]), "actual_seq_qlen has 2 batches but actual_seq_kvlen has 1"),
    (dict(actual_seq_qlen=[], actual_seq_kvlen=[]), "actual_seq_qlen is empty"),
    (dict(actual_seq_qlen=[1.5], actual_seq_kvlen=[4]), "actual_seq_qlen must be a list of ints"),
    (dict(actual_seq_qlen=torch.tensor([4.0]), actual_seq_kvlen=[4]), "must be a list of ints"),
    (dict(head_num=3), "head"),  # from the selected attention underneath
    (dict(value=torch.zeros(4, 1, 8, dtype=torch.float64)), "dtype"),
]


@pytest.mark.parametrize("bad,message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_validation(bad, message):
    args = dict(query=torch.randn(4, 2, 8), key=torch.randn(4, 1, 8), value=torch.randn(4, 1, 8), scale_value=0.3,
                head_num=2, window_size=2)
    args.update({k: v for k, v in bad.items() if not k.startswith("actual")})
    seqs = {k: v for k, v in bad.items() if k.startswith("actual")}
    before = [t.clone() for t in (args["query"], args["key"], args["value"])]
    with pytest.raises(ValueError) as err:
        opennsa.sliding_window_attention(args["query"], args["key"], args["value"], args["scale_value"],
                                         args["head_num"], args["window_size"], **seqs)
    text = str(err.value)
    assert "\n" not in text
    if message is not None:
        assert message.lower() in text.lower(), text
    for a, b in zip(before, (args["query"], args["key"], args["value"])):
        assert torch.equal(a, b)
