"""The PyTorch operators against a plain-PyTorch float64 oracle (SPEC section 7 tolerances),
gradcheck, opcheck, errors, strides and the no-copy guarantee."""

import math
import os
import re
import subprocess
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import opennsa
import torch_reference as ref

# SPEC section 7: (out tol, grads tol); the max-error bound is 4 * tol.
TOL = {torch.float16: (1e-3, 2e-3), torch.bfloat16: (8e-3, 1.6e-2), torch.float32: (2e-5, 2e-5)}


def make_case(seed, *, seq_q, seq_kv, n1, n2, dk, dv, bs, c, dtype=torch.float32, varlen=False,
              empty_frac=0.15, dup_frac=0.15, pad_q=0):
    """Random inputs. seq_q / seq_kv: per-batch lengths. topk picks random blocks of the batch
    (any block, also ones the causal mask hides), with some -1 slots and duplicated blocks."""
    gen = torch.Generator().manual_seed(seed)
    t1, t2 = sum(seq_q) + pad_q, sum(seq_kv)
    q = torch.randn(t1, n1, dk, generator=gen).to(dtype)
    k = torch.randn(t2, n2, dk, generator=gen).to(dtype)
    v = torch.randn(t2, n2, dv, generator=gen).to(dtype)
    topk = torch.full((t1, n2, c), -1, dtype=torch.int32)
    start = 0
    for sq, skv in zip(seq_q, seq_kv):
        nblocks = math.ceil(skv / bs)
        if nblocks > 0 and sq > 0:
            rows = torch.randint(0, nblocks, (sq, n2, c), generator=gen, dtype=torch.int32)
            u = torch.rand(sq, n2, c, generator=gen)
            rows[:, :, 1:] = torch.where(u[:, :, 1:] < dup_frac, rows[:, :, :1], rows[:, :, 1:])
            rows = torch.where(u > 1 - empty_frac, torch.full_like(rows, -1), rows)
            topk[start:start + sq] = rows
        start += sq
    cu_q = cu_kv = None
    if varlen:
        cu_q = torch.tensor(seq_q).cumsum(0).tolist()
        cu_kv = torch.tensor(seq_kv).cumsum(0).tolist()
    return q, k, v, topk, cu_q, cu_kv


def run_ours(q, k, v, topk, scale, bs, c, cu_q, cu_kv, causal, d_out):
    q, k, v = (x.detach().clone().requires_grad_(True) for x in (q, k, v))
    out, smax, ssum = opennsa.npu_nsa_select_attention(
        q, k, v, topk, scale, q.shape[1], bs, c, actual_seq_qlen=cu_q, actual_seq_kvlen=cu_kv,
        sparse_mode=2 if causal else 0)
    out.backward(d_out)
    return out.detach(), smax, ssum, q.grad, k.grad, v.grad


def run_reference(q, k, v, topk, scale, bs, cu_q, cu_kv, causal, d_out):
    q, k, v = (x.detach().double().requires_grad_(True) for x in (q, k, v))
    out = ref.select_attention(q, k, v, topk, scale, bs, actual_seq_qlen=cu_q, actual_seq_kvlen=cu_kv,
                               causal=causal)
    out.backward(d_out.double())
    return out.detach(), q.grad, k.grad, v.grad


def assert_close(name, got, want, tol):
    err = got.double() - want
    ref_norm = want.norm().item()
    rel_fro = err.norm().item() / max(ref_norm, 1e-300)
    rel_max = err.abs().max().item() / max(want.abs().max().item(), 1e-300) if want.numel() else 0.0
    if ref_norm == 0:
        assert err.abs().max().item() == 0, f"{name}: reference is 0, got max |x| = {err.abs().max().item()}"
        return
    assert rel_fro <= tol and rel_max <= 4 * tol, f"{name}: rel Frobenius {rel_fro:.3g}, rel max {rel_max:.3g}, tol {tol}"


CASES = [
    # id, shape arguments
    ("mha-causal", dict(seq_q=[97], seq_kv=[97], n1=2, n2=2, dk=32, dv=32, bs=16, c=4), True),
    ("gqa-noncausal", dict(seq_q=[80], seq_kv=[120], n1=8, n2=2, dk=48, dv=24, bs=8, c=5), False),
    ("gqa-varlen-causal", dict(seq_q=[33, 0, 70, 21], seq_kv=[33, 5, 70, 40], n1=4, n2=1, dk=64, dv=32,
                               bs=16, c=3, varlen=True, pad_q=3), True),
    ("dk192-dv128", dict(seq_q=[130], seq_kv=[130], n1=4, n2=1, dk=192, dv=128, bs=64, c=2), True),
    ("bs32-g16", dict(seq_q=[50, 90], seq_kv=[64, 90], n1=16, n2=1, dk=16, dv=16, bs=32, c=3,
                      varlen=True), False),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name,shape,causal", CASES, ids=[c[0] for c in CASES])
def test_matches_plain_pytorch(name, shape, causal, dtype):
    q, k, v, topk, cu_q, cu_kv = make_case(hash(name) % 1000, dtype=dtype, **shape)
    bs, c = shape["bs"], shape["c"]
    scale = 1.0 / math.sqrt(shape["dk"])
    d_out = torch.randn(q.shape[0], q.shape[1], shape["dv"]).to(dtype)
    out, smax, ssum, dq, dk, dv = run_ours(q, k, v, topk, scale, bs, c, cu_q, cu_kv, causal, d_out)
    r_out, r_dq, r_dk, r_dv = run_reference(q, k, v, topk, scale, bs, cu_q, cu_kv, causal, d_out)
    assert out.dtype == dq.dtype == dk.dtype == dv.dtype == dtype
    assert smax.dtype == ssum.dtype == torch.float32 and smax.shape == (q.shape[0], q.shape[1], 8)
    tol_out, tol_grad = TOL[dtype]
    assert_close("out", out, r_out, tol_out)
    assert_close("dq", dq, r_dq, tol_grad)
    assert_close("dk", dk, r_dk, tol_grad)
    assert_close("dv", dv, r_dv, tol_grad)

    # Statistics: the 8 entries of a row are equal; log(sum) + max is the log-sum-exp.
    assert torch.equal(smax, smax[..., :1].expand_as(smax)) and torch.equal(ssum, ssum[..., :1].expand_as(ssum))
    lse = ref.softmax_logsumexp(q, k, topk, scale, bs, actual_seq_qlen=cu_q, actual_seq_kvlen=cu_kv, causal=causal)
    rows = torch.isfinite(lse)
    got = torch.log(ssum[..., 0].double()) + smax[..., 0].double()
    assert (got[rows] - lse[rows]).abs().max().item() <= 1e-3
    # Rows with no visible key (and padding rows): out = 0, max = 0, sum = 0.
    assert (out[~rows] == 0).all() and (smax[~rows] == 0).all() and (ssum[~rows] == 0).all()


def random_shape(seed):
    """Shapes drawn at random (seeded): batches, heads, head dims, block size and count."""
    gen = torch.Generator().manual_seed(1000 + seed)
    r = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=gen))
    n2 = r(1, 3)
    nbatch = r(1, 3)
    seq_kv = [r(1, 90) for _ in range(nbatch)]
    seq_q = [min(s, r(0, 90)) for s in seq_kv]
    return dict(seq_q=seq_q, seq_kv=seq_kv, n1=n2 * r(1, 5), n2=n2, dk=r(1, 70), dv=r(1, 70), bs=r(1, 20),
                c=r(1, 6), varlen=nbatch > 1 or r(0, 1) == 1, pad_q=r(0, 2)), r(0, 1) == 1


@pytest.mark.parametrize("seed", range(6))
def test_random_shapes_match_plain_pytorch(seed):
    shape, causal = random_shape(seed)
    dtype = [torch.float32, torch.bfloat16, torch.float16][seed % 3]
    q, k, v, topk, cu_q, cu_kv = make_case(seed, dtype=dtype, **shape)
    if not shape["varlen"] and shape["pad_q"]:  # padding rows need explicit batches
        cu_q, cu_kv = [sum(shape["seq_q"])], [sum(shape["seq_kv"])]
    bs, c = shape["bs"], shape["c"]
    scale = shape["dk"] ** -0.5
    d_out = torch.randn(q.shape[0], q.shape[1], shape["dv"]).to(dtype)
    got = run_ours(q, k, v, topk, scale, bs, c, cu_q, cu_kv, causal, d_out)
    want = run_reference(q, k, v, topk, scale, bs, cu_q, cu_kv, causal, d_out)
    tol_out, tol_grad = TOL[dtype]
    for name, a, b, tol in zip(("out", "dq", "dk", "dv"), (got[0],) + got[3:], want, (tol_out,) + (tol_grad,) * 3):
        assert_close(f"{name} {shape} causal={causal}", a, b, tol)


GRADCHECK_CASES = [
    ("causal", dict(seq_q=[13], seq_kv=[13], n1=2, n2=2, dk=6, dv=5, bs=4, c=3), True),
    ("noncausal-gqa", dict(seq_q=[9], seq_kv=[14], n1=4, n2=2, dk=5, dv=7, bs=4, c=3), False),
    ("varlen-gqa-causal", dict(seq_q=[6, 0, 7], seq_kv=[9, 3, 7], n1=3, n2=1, dk=4, dv=4, bs=2, c=3,
                               varlen=True, pad_q=1), True),
]


@pytest.mark.parametrize("name,shape,causal", GRADCHECK_CASES, ids=[c[0] for c in GRADCHECK_CASES])
def test_gradcheck_fp64(name, shape, causal):
    q, k, v, topk, cu_q, cu_kv = make_case(7, dtype=torch.float64, **shape)
    q, k, v = (x.requires_grad_(True) for x in (q, k, v))

    def f(q, k, v):
        return opennsa.npu_nsa_select_attention(q, k, v, topk, 0.7, shape["n1"], shape["bs"], shape["c"],
                                                actual_seq_qlen=cu_q, actual_seq_kvlen=cu_kv,
                                                sparse_mode=2 if causal else 0)[0]

    assert torch.autograd.gradcheck(f, (q, k, v), eps=1e-6, atol=1e-8, rtol=1e-6)


def opcheck_args(requires_grad):
    q, k, v, topk, cu_q, cu_kv = make_case(3, seq_q=[10, 12], seq_kv=[16, 12], n1=4, n2=2, dk=8, dv=6, bs=4,
                                           c=3, varlen=True)
    if requires_grad:
        q, k, v = (x.requires_grad_(True) for x in (q, k, v))
    return q, k, v, topk, cu_q, cu_kv


@pytest.mark.skipif(not hasattr(torch.library, "opcheck"), reason="torch.library.opcheck needs torch >= 2.4")
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck_forward(requires_grad):
    q, k, v, topk, cu_q, cu_kv = opcheck_args(requires_grad)
    torch.library.opcheck(torch.ops.opennsa.select_attention.default, (q, k, v, topk, 0.5, 4, 4, 3),
                          dict(actual_seq_qlen=cu_q, actual_seq_kvlen=cu_kv, sparse_mode=2))


@pytest.mark.skipif(not hasattr(torch.library, "opcheck"), reason="torch.library.opcheck needs torch >= 2.4")
def test_opcheck_backward():
    q, k, v, topk, cu_q, cu_kv = opcheck_args(False)
    out, smax, ssum = opennsa.npu_nsa_select_attention(q, k, v, topk, 0.5, 4, 4, 3, actual_seq_qlen=cu_q,
                                                       actual_seq_kvlen=cu_kv)
    torch.library.opcheck(torch.ops.opennsa.select_attention_grad.default,
                          (torch.randn_like(out), q, k, v, out, smax, ssum, topk, 0.5, 4, 4, 3),
                          dict(actual_seq_qlen=cu_q, actual_seq_kvlen=cu_kv, sparse_mode=2))


def test_grad_function_equals_autograd():
    q, k, v, topk, cu_q, cu_kv = opcheck_args(False)
    d_out = torch.randn(q.shape[0], 4, 6)
    out, smax, ssum, dq, dk, dv = run_ours(q, k, v, topk, 0.5, 4, 3, cu_q, cu_kv, True, d_out)
    g = opennsa.npu_nsa_select_attention_grad(d_out, q, k, v, out, smax, ssum, topk, 0.5, 4, 4, 3,
                                              actual_seq_qlen=cu_q, actual_seq_kvlen=cu_kv)
    assert torch.equal(g[0], dq) and torch.equal(g[1], dk) and torch.equal(g[2], dv)


def test_statistics_are_not_differentiable():
    q, k, v, topk, _, _ = opcheck_args(True)
    out, smax, ssum = opennsa.npu_nsa_select_attention(q, k, v, topk, 0.5, 4, 4, 3)
    assert out.requires_grad and not smax.requires_grad and not ssum.requires_grad


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
    q, k, v, topk, cu_q, cu_kv = make_case(5, seq_q=[40], seq_kv=[40], n1=4, n2=2, dk=16, dv=8, bs=8, c=3)
    for inputs in [(q, k, v, topk), tuple(strided_copy(x) for x in (q, k, v, topk))]:
        with OpRecorder() as rec:
            out, smax, ssum = opennsa.npu_nsa_select_attention(*inputs, 0.3, 4, 8, 3)
        # Only the operator itself ran: no .contiguous(), clone or copy in the wrapper.
        assert rec.ops == ["opennsa.select_attention.default"], rec.ops
        with OpRecorder() as rec:
            opennsa.npu_nsa_select_attention_grad(out, *inputs[:3], out, smax, ssum, inputs[3], 0.3, 4, 8, 3)
        assert rec.ops == ["opennsa.select_attention_grad.default"], rec.ops
        # Outputs are fresh tensors that alias no input.
        for o in (out, smax, ssum):
            assert o.is_contiguous()
            assert all(o.untyped_storage().data_ptr() != x.untyped_storage().data_ptr() for x in inputs)


def test_strided_inputs_give_identical_results():
    q, k, v, topk, cu_q, cu_kv = make_case(11, seq_q=[30, 25], seq_kv=[30, 41], n1=6, n2=3, dk=12, dv=10,
                                           bs=8, c=4, varlen=True, dtype=torch.bfloat16)
    d_out = torch.randn(q.shape[0], 6, 10).to(torch.bfloat16)
    base = run_ours(q, k, v, topk, 0.4, 8, 4, cu_q, cu_kv, True, d_out)
    views = [strided_copy(x, dims) for x, dims in zip((q, k, v, topk), [(0, 1), (1, 2), (0, 2), (0, 1)])]
    d_out_view = strided_copy(d_out, (0, 2))
    strided = run_ours(*views, 0.4, 8, 4, cu_q, cu_kv, True, d_out_view)
    for a, b in zip(base, strided):
        assert torch.equal(a, b)


def test_deterministic_across_runs_and_threads():
    q, k, v, topk, _, _ = make_case(13, seq_q=[200], seq_kv=[200], n1=8, n2=2, dk=32, dv=16, bs=16, c=4)
    d_out = torch.randn(200, 8, 16)
    before, torch_before = opennsa.get_num_threads(), torch.get_num_threads()
    try:
        results = []
        # (OpenNSA's threads, torch's): with torch at >= 2 the regions run on torch's pool.
        for threads, torch_threads in ((1, 1), (2, 1), (2, 2), (3, 2), (2, 3)):
            opennsa.set_num_threads(threads)
            torch.set_num_threads(torch_threads)
            results.append(run_ours(q, k, v, topk, 0.2, 16, 4, None, None, True, d_out))
    finally:
        opennsa.set_num_threads(before)
        torch.set_num_threads(torch_before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


# The first lines of the programs below, each run in a fresh Python process: torch's thread count
# from argv[1], OpenNSA at 2 threads, and run() computes one selected attention.
SELECT_PROGRAM_SETUP = """
import multiprocessing as mp, os, sys, torch, opennsa
torch.set_num_threads(int(sys.argv[1]))
opennsa.set_num_threads(2)
torch.manual_seed(0)
q, k, v = torch.randn(512, 8, 32), torch.randn(512, 2, 32), torch.randn(512, 2, 32)
topk = torch.randint(0, 32, (512, 2, 4), dtype=torch.int32)
run = lambda: opennsa.npu_nsa_select_attention(q, k, v, topk, 0.2, 8, 16, 4, sparse_mode=0)[0]
"""


def run_select_program(body, torch_threads, env=None):
    """The last word the program SELECT_PROGRAM_SETUP + body printed, run with torch at torch_threads
    (and the environment variables env added)."""
    done = subprocess.run([sys.executable, "-c", SELECT_PROGRAM_SETUP + body, str(torch_threads)],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, **(env or {})))
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


NEW_THREADS_BODY = """
torch.randn(1 << 22).exp_()  # torch starts its own workers first
before = len(os.listdir("/proc/self/task"))
run()
print(len(os.listdir("/proc/self/task")) - before)
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
def test_regions_run_on_torchs_threads_when_torch_has_several():
    # A fresh process each: OpenNSA's own pool starts its worker (one thread for 2) on its first
    # region, unless torch lends its intra-op threads, as it does when it has 2 or more.
    # The build must run the regions in parallel on torch's threads: at::parallel_for's OpenMP
    # form is inline code, serial unless the extension is compiled with OpenMP (python/CMakeLists.txt).
    assert torch.ops.opennsa.lends_torch_threads()
    assert int(run_select_program(NEW_THREADS_BODY, 1)) == 1
    assert int(run_select_program(NEW_THREADS_BODY, 2)) == 0


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
def test_lending_can_be_switched_off_with_the_same_bits():
    # OPENNSA_LEND_TORCH_THREADS=0: the library's own pool even with torch at 2 threads (its
    # worker starts on the first region), and the same output bits as with lending.
    off = {"OPENNSA_LEND_TORCH_THREADS": "0"}
    assert run_select_program("print(torch.ops.opennsa.lends_torch_threads())", 2, off) == "False"
    assert int(run_select_program(NEW_THREADS_BODY, 2, off)) == 1
    digest = "import hashlib; print(hashlib.sha256(run().numpy().tobytes()).hexdigest())"
    assert run_select_program(digest, 2, off) == run_select_program(digest, 2)


FORKED_CHILD_BODY = """
want = run()  # the pool's worker thread exists now

def child(results):
    results.put(bool(torch.equal(run(), want)))

if __name__ == "__main__":
    fork = mp.get_context("fork")
    results = fork.Queue()
    p = fork.Process(target=child, args=(results,))
    p.start()
    p.join(60)
    print("hung" if p.is_alive() else results.get())
    if p.is_alive():
        p.kill()
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_computes_with_its_own_pool():
    # fork() copies only the calling thread; the library's pool must not wait for workers that the
    # child does not have (it hung before the pool's pthread_atfork handlers). torch at 1 thread,
    # as in DataLoader's workers: the library's own pool serves.
    assert run_select_program(FORKED_CHILD_BODY, 1) == "True"


def test_meta_tensors_propagate_shapes():
    q = torch.empty(10, 4, 24, device="meta", dtype=torch.bfloat16)
    k = torch.empty(30, 2, 24, device="meta", dtype=torch.bfloat16)
    v = torch.empty(30, 2, 16, device="meta", dtype=torch.bfloat16)
    topk = torch.empty(10, 2, 3, device="meta", dtype=torch.int32)
    out, smax, ssum = torch.ops.opennsa.select_attention(q, k, v, topk, 0.5, 4, 8, 3)
    assert out.shape == (10, 4, 16) and out.dtype == torch.bfloat16 and out.device.type == "meta"
    assert smax.shape == ssum.shape == (10, 4, 8) and smax.dtype == torch.float32
    dq, dk, dv = torch.ops.opennsa.select_attention_grad(out, q, k, v, out, smax, ssum, topk, 0.5, 4, 8, 3)
    assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == v.shape


def test_empty_query():
    q, k, v = torch.empty(0, 2, 8), torch.randn(16, 1, 8), torch.randn(16, 1, 4)
    topk = torch.empty(0, 1, 2, dtype=torch.int32)
    out, smax, ssum = opennsa.npu_nsa_select_attention(q, k, v, topk, 1.0, 2, 8, 2)
    assert out.shape == (0, 2, 4)
    dq, dk, dv = opennsa.npu_nsa_select_attention_grad(out, q, k, v, out, smax, ssum, topk, 1.0, 2, 8, 2)
    assert dq.shape == (0, 2, 8) and (dk == 0).all() and (dv == 0).all()


# ---------------------------------------------------------------------------------------------
# Bad input: ValueError carrying the library's one-line message.

def base_args():
    q, k, v, topk, _, _ = make_case(17, seq_q=[20], seq_kv=[20], n1=4, n2=2, dk=8, dv=8, bs=4, c=2,
                                    empty_frac=0, dup_frac=0)
    return dict(query=q, key=k, value=v, topk_indices=topk, scale_value=0.5, head_num=4, select_block_size=4,
                select_block_count=2)


def call_with(**changes):
    args = base_args()
    kwargs = {n: changes.pop(n) for n in ("atten_mask", "actual_seq_qlen", "actual_seq_kvlen", "sparse_mode")
              if n in changes}
    args.update(changes)
    return opennsa.npu_nsa_select_attention(*args.values(), **kwargs)


def bad_topk():
    topk = base_args()["topk_indices"].clone()
    topk[7, 1, 1] = 5  # 20 keys in blocks of 4: valid blocks are 0..4
    return topk


@pytest.mark.parametrize("changes,message", [
    (dict(topk_indices=bad_topk()), r"topkIndices\[7, 1, 1\] = 5 is out of range \[0, 5\)"),
    (dict(head_num=3), r"headNum = 3 must equal query.shape\[1\] = 4"),
    (dict(select_block_count=3), r"topkIndices.shape\[2\] = 2 must equal 3 \(selectedBlockCount\)"),
    (dict(topk_indices=bad_topk().long()), r"topkIndices: dtype int64 must be int32"),
    (dict(sparse_mode=1), r"sparseMode = 1 is not supported"),
    (dict(select_block_size=0), r"selectedBlockSize = 0 must be >= 1"),
    (dict(actual_seq_qlen=[20]), r"give both or neither"),
    (dict(actual_seq_qlen=[10, 20], actual_seq_kvlen=[15, 12]), r"actualSeqKvLenOptional\[1\] = 12 is less than"),
    (dict(atten_mask=torch.zeros(4, 4)), r"attenMaskOptional: dtype fp32 must be bool or uint8"),
    (dict(key=torch.randn(20, 2, 9)), r"key.shape\[2\] = 9 must equal 8"),
    (dict(query=torch.randn(20, 4, 8, 1)), r"query has shape \[20, 4, 8, 1\]; expected rank 3"),
    (dict(value=torch.randn(20, 2, 8).to(torch.float16)), r"value: dtype fp16 must be fp32"),
])
def test_bad_input_raises_value_error(changes, message):
    with pytest.raises(ValueError, match=message) as info:
        call_with(**changes)
    text = str(info.value)
    assert text.strip(), "empty message"
    first_line = text.splitlines()[0]
    assert re.search(message, first_line), text


def test_bad_topk_leaves_no_partial_result_and_message_names_batch():
    with pytest.raises(ValueError) as info:
        call_with(topk_indices=bad_topk())
    assert "batch 0" in str(info.value) and "block size 4" in str(info.value)


def test_bad_seqlen_type():
    with pytest.raises(ValueError, match="actual_seq_qlen"):
        call_with(actual_seq_qlen=5, actual_seq_kvlen=[20])
