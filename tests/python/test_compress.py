"""npu_nsa_compress / npu_nsa_compress_grad against a plain-PyTorch float64 oracle (unfold and a
weighted sum, differentiated by autograd), gradcheck, opcheck, errors, strides and the no-copy
guarantee. Tolerances: docs/spec/README.md (compress outputs and gradients)."""

import random
import re

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import opennsa

TOL = {torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float32: 2e-5, torch.float64: 1e-12}


def reference_compress(x, w, l, d, cu):
    """Plain PyTorch: per batch, the windows x[s + c*d : s + c*d + l] (unfold) weighted per head."""
    outs, start = [], 0
    for end in cu:
        seg = x[start:end]
        if seg.shape[0] >= l:
            windows = seg.unfold(0, l, d)  # [C, N, D, l]
            outs.append((windows * w.t()[None, :, None, :]).sum(-1))
        start = end
    if not outs:
        return x.new_zeros((0, x.shape[1], x.shape[2]))
    return torch.cat(outs)


def make_case(seed, *, lens, n, dh, l, d, pad=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    t = sum(lens) + pad
    x = torch.randn(t, n, dh, generator=gen).to(dtype)
    w = torch.randn(l, n, generator=gen).to(dtype)
    cu = torch.tensor(lens).cumsum(0).tolist()
    return x, w, cu


def rel_close(got, ref, tol, what):
    got, ref = got.double(), ref.double()
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    if ref.numel() == 0:
        return
    err = (got - ref).norm() / max(ref.norm().item(), 1e-6 * ref.numel() ** 0.5)
    err_max = (got - ref).abs().max() / max(ref.abs().max().item(), 1e-6)
    assert err <= tol and err_max <= 4 * tol, f"{what}: relative error {err:.3g}, max {err_max:.3g} (tol {tol})"


def run_ours(x, w, l, d, cu, d_out):
    x, w = (t.detach().clone().requires_grad_(True) for t in (x, w))
    out = opennsa.npu_nsa_compress(x, w, l, d, actual_seq_len=cu)
    out.backward(d_out)
    return out.detach(), x.grad, w.grad


def run_reference(x, w, l, d, cu, d_out):
    x, w = (t.detach().double().requires_grad_(True) for t in (x, w))
    out = reference_compress(x, w, l, d, cu)
    if not out.requires_grad:  # no window fits: nothing reads x or w
        return out, torch.zeros_like(x), torch.zeros_like(w)
    gx, gw = torch.autograd.grad(out, (x, w), d_out.double(), allow_unused=True)
    return out.detach(), gx if gx is not None else torch.zeros_like(x), gw if gw is not None else torch.zeros_like(w)


def random_shape(rng):
    l = rng.randint(1, 24)
    d = rng.choice([l, 1, rng.randint(1, l)])
    lens = [rng.choice([0, rng.randint(0, l - 1) if l > 1 else 0, rng.randint(l, 3 * l + d)])
            for _ in range(rng.randint(1, 4))]
    return dict(lens=lens, n=rng.randint(1, 5), dh=rng.choice([1, 7, 16, 33, 128]), l=l, d=d, pad=rng.randint(0, 3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(6))
def test_random_varlen_shapes_match_plain_pytorch(dtype, seed):
    shape = random_shape(random.Random(seed * 31 + 7))
    x, w, cu = make_case(seed, dtype=dtype, **shape)
    tc = sum(max(0, (s - shape["l"]) // shape["d"] + 1) if s >= shape["l"] else 0 for s in shape["lens"])
    d_out = torch.randn(tc, shape["n"], shape["dh"]).to(dtype)
    ours = run_ours(x, w, shape["l"], shape["d"], cu, d_out)
    ref = run_reference(x, w, shape["l"], shape["d"], cu, d_out)
    assert ours[0].shape == (tc, shape["n"], shape["dh"]) and ours[0].dtype == dtype
    for got, want, what in zip(ours, ref, ("output", "grad_input", "grad_weight")):
        rel_close(got, want, TOL[dtype], f"{what} {shape}")


def test_production_shape_bf16():
    x, w, cu = make_case(3, lens=[300, 129], n=4, dh=192, l=32, d=16, dtype=torch.bfloat16)
    d_out = torch.randn(17 + 7, 4, 192).to(torch.bfloat16)
    for got, want, what in zip(run_ours(x, w, 32, 16, cu, d_out), run_reference(x, w, 32, 16, cu, d_out),
                               ("output", "grad_input", "grad_weight")):
        rel_close(got, want, TOL[torch.bfloat16], what)


@pytest.mark.parametrize("shape", [
    dict(lens=[13], n=2, dh=3, l=4, d=2),
    dict(lens=[0, 9, 3, 11], n=3, dh=5, l=5, d=3, pad=2),
    dict(lens=[7, 8], n=1, dh=4, l=3, d=3),
    dict(lens=[10], n=2, dh=2, l=4, d=1),
])
def test_gradcheck_fp64(shape):
    x, w, cu = make_case(5, dtype=torch.float64, **shape)
    x.requires_grad_(True)
    w.requires_grad_(True)

    def f(x, w):
        return opennsa.npu_nsa_compress(x, w, shape["l"], shape["d"], actual_seq_len=cu)

    assert torch.autograd.gradcheck(f, (x, w), eps=1e-6, atol=1e-8, rtol=1e-6)


@pytest.mark.skipif(not hasattr(torch.library, "opcheck"), reason="torch.library.opcheck needs torch >= 2.4")
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck_forward(requires_grad):
    x, w, cu = make_case(9, lens=[20, 0, 13], n=3, dh=6, l=6, d=4, pad=1)
    x.requires_grad_(requires_grad)
    w.requires_grad_(requires_grad)
    torch.library.opcheck(torch.ops.opennsa.compress.default, (x, w, 6, 4), dict(actual_seq_len=cu))


@pytest.mark.skipif(not hasattr(torch.library, "opcheck"), reason="torch.library.opcheck needs torch >= 2.4")
def test_opcheck_backward():
    x, w, cu = make_case(9, lens=[20, 0, 13], n=3, dh=6, l=6, d=4, pad=1)
    grad = torch.randn(4 + 2, 3, 6)
    torch.library.opcheck(torch.ops.opennsa.compress_grad.default, (grad, x, w, 6, 4), dict(actual_seq_len=cu))


def test_grad_function_equals_autograd():
    x, w, cu = make_case(11, lens=[30, 17], n=2, dh=9, l=8, d=4)
    d_out = torch.randn(6 + 3, 2, 9)
    out, gx, gw = run_ours(x, w, 8, 4, cu, d_out)
    grad_input, grad_weight = opennsa.npu_nsa_compress_grad(d_out, x, w, 8, 4, actual_seq_len=cu)
    assert torch.equal(grad_input, gx) and torch.equal(grad_weight, gw)
    assert grad_input.shape == x.shape and grad_weight.shape == w.shape


def test_output_is_sized_by_the_compressed_token_count():
    # CANN's example lengths: cumulative [0, 128, 272], l = 32, d = 16 -> 0 + 7 + 8 rows
    x = torch.randn(280, 2, 16, dtype=torch.bfloat16)
    w = torch.randn(32, 2, dtype=torch.bfloat16)
    assert opennsa.npu_nsa_compress(x, w, 32, 16, actual_seq_len=[0, 128, 272]).shape == (15, 2, 16)
    assert opennsa.npu_nsa_compress(x, w, 32, 16, actual_seq_len=torch.tensor([0, 128, 272])).shape == (15, 2, 16)
    out = opennsa.npu_nsa_compress(x, w, 32, 16, actual_seq_len=[20])  # no window fits
    assert out.shape == (0, 2, 16)
    grad_input, grad_weight = opennsa.npu_nsa_compress_grad(out, x, w, 32, 16, actual_seq_len=[20])
    assert (grad_input == 0).all() and (grad_weight == 0).all()


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
    view = big[tuple(slice(1, None) for _ in shape)].transpose(a, b)
    view.copy_(x)
    assert not view.is_contiguous() and view.storage_offset() > 0
    return view


def test_non_contiguous_inputs_are_read_in_place_without_copies():
    x, w, cu = make_case(13, lens=[40, 9], n=3, dh=8, l=8, d=4, dtype=torch.bfloat16)
    grad = torch.randn(9 + 1, 3, 8).to(torch.bfloat16)
    for inputs in [(x, w, grad), (strided_copy(x, (0, 1)), strided_copy(w, (0, 1)), strided_copy(grad, (1, 2)))]:
        with OpRecorder() as rec:
            out = opennsa.npu_nsa_compress(inputs[0], inputs[1], 8, 4, actual_seq_len=cu)
        assert rec.ops == ["opennsa.compress.default"], rec.ops
        with OpRecorder() as rec:
            gi, gw = opennsa.npu_nsa_compress_grad(inputs[2], inputs[0], inputs[1], 8, 4, actual_seq_len=cu)
        assert rec.ops == ["opennsa.compress_grad.default"], rec.ops
        for o in (out, gi, gw):
            assert o.is_contiguous()
            assert all(o.untyped_storage().data_ptr() != t.untyped_storage().data_ptr() for t in inputs)


def test_strided_and_expanded_inputs_give_identical_results():
    x, w, cu = make_case(17, lens=[33, 20], n=4, dh=12, l=6, d=2, dtype=torch.float32)
    tc = (33 - 6) // 2 + 1 + (20 - 6) // 2 + 1
    d_out = torch.randn(tc, 4, 12)
    base = run_ours(x, w, 6, 2, cu, d_out)
    strided = run_ours(strided_copy(x, (1, 2)), strided_copy(w, (0, 1)), 6, 2, cu, strided_copy(d_out, (0, 2)))
    for a, b in zip(base, strided):
        assert torch.equal(a, b)
    # out.sum().backward() hands the backward an expanded (stride 0) grad: read in place too
    xs, ws = (t.clone().requires_grad_(True) for t in (x, w))
    opennsa.npu_nsa_compress(xs, ws, 6, 2, actual_seq_len=cu).sum().backward()
    gi, gw = opennsa.npu_nsa_compress_grad(torch.ones(tc, 4, 12), x, w, 6, 2, actual_seq_len=cu)
    assert torch.equal(xs.grad, gi) and torch.equal(ws.grad, gw)


def test_deterministic_across_runs_and_threads():
    x, w, cu = make_case(19, lens=[900, 0, 400], n=4, dh=40, l=12, d=5, dtype=torch.bfloat16)
    tc = (900 - 12) // 5 + 1 + (400 - 12) // 5 + 1
    d_out = torch.randn(tc, 4, 40).to(torch.bfloat16)
    before = opennsa.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            opennsa.set_num_threads(threads)
            results.append(run_ours(x, w, 12, 5, cu, d_out))
    finally:
        opennsa.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_meta_tensors_propagate_shapes():
    x = torch.empty(100, 4, 24, device="meta", dtype=torch.bfloat16)
    w = torch.empty(16, 4, device="meta", dtype=torch.bfloat16)
    out = torch.ops.opennsa.compress(x, w, 16, 8, [50, 100])
    assert out.shape == (5 + 5, 4, 24) and out.dtype == torch.bfloat16 and out.device.type == "meta"
    gi, gw = torch.ops.opennsa.compress_grad(out, x, w, 16, 8, [50, 100])
    assert gi.shape == x.shape and gw.shape == w.shape


# ---------------------------------------------------------------------------------------------
# Bad input: ValueError carrying the library's one-line message.

def call_with(fn="forward", **changes):
    x, w, cu = make_case(23, lens=[20, 12], n=3, dh=8, l=4, d=2)
    args = dict(input=x, weight=w, compress_block_size=4, compress_stride=2, actual_seq_len=cu)
    args.update(changes)
    seq = args.pop("actual_seq_len")
    if fn == "forward":
        return opennsa.npu_nsa_compress(*args.values(), actual_seq_len=seq)
    grad = changes.get("grad", torch.randn(9 + 5, 3, 8))
    args.pop("grad", None)
    return opennsa.npu_nsa_compress_grad(grad, *args.values(), actual_seq_len=seq)


@pytest.mark.parametrize("fn", ["forward", "backward"])
@pytest.mark.parametrize("changes,message", [
    (dict(actual_seq_len=None), r"actual_seq_len is required"),
    (dict(actual_seq_len=[]), r"actSeqLenOptional: length 0"),
    (dict(actual_seq_len=[20, 33]), r"actSeqLenOptional\[1\] = 33 exceeds T \(input.shape\[0\]\) = 32"),
    (dict(actual_seq_len=[20, 12]), r"actSeqLenOptional\[1\] = 12 is less than"),
    (dict(actual_seq_len=[20.5]), r"actual_seq_len must be a list of ints"),
    (dict(actual_seq_len=5), r"actual_seq_len must be a list"),
    (dict(compress_stride=0), r"compressStride = 0 must be >= 1"),
    (dict(compress_stride=5), r"compressBlockSize = 4 must be >= compressStride = 5"),
    (dict(weight=torch.randn(5, 3)), r"weight.shape\[0\] = 5 must equal 4 \(compressBlockSize\)"),
    (dict(weight=torch.randn(4, 2)), r"weight.shape\[1\] = 2 must equal 3"),
    (dict(weight=torch.randn(4, 3).double()), r"weight: dtype fp64 must be fp32"),
    (dict(input=torch.randn(32, 3, 8).to(torch.int32)), r"dtype int32"),
])
def test_bad_input_raises_value_error(fn, changes, message):
    if fn == "backward" and "input" in changes:
        message = r"input: dtype int32 must be fp32"
    with pytest.raises(ValueError, match=message) as info:
        call_with(fn, **changes)
    lines = str(info.value).strip().splitlines()
    assert lines and re.search(message, lines[0]), str(info.value)


def test_bad_grad_rows_raise_value_error():
    with pytest.raises(ValueError, match=r"outputGrad.shape\[0\] = 13 must equal 14"):
        call_with("backward", grad=torch.randn(13, 3, 8))
