"""opennsa's gated sum (the layer's mix of branch outputs, python/csrc/gated_sum.cpp) against an
fp64 evaluation of sum_i gates[..., c_i] * outputs_i and its derivatives, on random data: every
dtype, column subsets and orders, row counts that are not multiples of the vector width,
gradcheck, opcheck, torch.compile, non-contiguous inputs, thread-count determinism and errors."""

import pytest
import torch

from opennsa._gated_sum import gated_sum

TOL = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 8e-3, torch.float16: 1e-3}


def make_case(seed, T=37, N=5, D=13, branches=3, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    gates = torch.rand(T, N, branches, generator=gen, dtype=torch.float64).to(dtype)
    outputs = [torch.randn(T, N, D, generator=gen, dtype=torch.float64).to(dtype) for _ in range(branches)]
    grad = torch.randn(T, N, D, generator=gen, dtype=torch.float64).to(dtype)
    return gates, outputs, grad


def reference(gates, outputs, columns, grad):
    """Forward and gradients in fp64 from the formula (autograd over the fp64 copies)."""
    g = gates.double().requires_grad_(True)
    o = [x.double().requires_grad_(True) for x in outputs]
    y = sum(g[:, :, c:c + 1] * x for c, x in zip(columns, o))
    y.backward(grad.double())
    return y.detach(), g.grad, [x.grad for x in o]


def assert_close(name, got, want, tol):
    err = (got.double() - want).abs()
    assert err.norm() <= tol * want.norm() and err.max() <= 4 * tol * want.abs().max(), \
        f"{name}: rel Frobenius {(err.norm() / want.norm()).item():.3g}, tol {tol}"


def ours(gates, outputs, columns, grad):
    g = gates.clone().requires_grad_(True)
    o = [x.clone().requires_grad_(True) for x in outputs]
    y = gated_sum(g, o, columns)
    y.backward(grad)
    return y, g.grad, [x.grad for x in o]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("columns", [[0, 1, 2], [2], [0, 2], [1, 0], [2, 0, 1]])
def test_matches_the_fp64_formula(dtype, columns):
    # D = 13: one 8-wide group of the dot's partial sums plus a tail of 5.
    gates, outputs, grad = make_case(len(columns) * 7 + columns[0], dtype=dtype)
    outputs = outputs[:len(columns)]
    y, dg, do = ours(gates, outputs, columns, grad)
    ry, rdg, rdo = reference(gates, outputs, columns, grad)
    assert y.dtype == dtype and dg.dtype == dtype and all(x.dtype == dtype for x in do)
    tol = TOL[dtype]
    assert_close("out", y, ry, tol)
    for c in columns:
        assert_close(f"d gates[..., {c}]", dg[:, :, c], rdg[:, :, c], tol)
    for c in set(range(3)) - set(columns):  # columns no output uses: exactly 0
        assert torch.equal(dg[:, :, c], torch.zeros_like(dg[:, :, c]))
    for i, (got, want) in enumerate(zip(do, rdo)):
        assert_close(f"d outputs[{i}]", got, want, tol)


@pytest.mark.parametrize("D", [1, 8, 64, 67])
def test_head_dims_around_the_vector_width(D):
    gates, outputs, grad = make_case(100 + D, T=9, N=3, D=D)
    y, dg, do = ours(gates, outputs, [0, 1, 2], grad)
    ry, rdg, rdo = reference(gates, outputs, [0, 1, 2], grad)
    assert_close("out", y, ry, TOL[torch.float32])
    assert_close("d gates", dg, rdg, TOL[torch.float32])
    for got, want in zip(do, rdo):
        assert_close("d outputs", got, want, TOL[torch.float32])


def test_bf16_rounds_once():
    # The sum is accumulated in fp32 and rounded once: the result is the fp64 sum rounded to bf16
    # wherever that sum is not within an fp32 rounding of a bf16 tie (none of these random values).
    gates, outputs, grad = make_case(3, dtype=torch.bfloat16)
    y = gated_sum(gates, outputs, [0, 1, 2])
    ry, _, _ = reference(gates, outputs, [0, 1, 2], grad)
    assert torch.equal(y, ry.to(torch.bfloat16))


def test_gradcheck_fp64():
    gates, outputs, _ = make_case(5, T=6, N=2, D=5, dtype=torch.float64)
    inputs = [gates.requires_grad_(True)] + [o.requires_grad_(True) for o in outputs[:2]]

    def f(g, a, b):
        return gated_sum(g, [a, b], [2, 0])

    assert torch.autograd.gradcheck(f, tuple(inputs), eps=1e-6, atol=1e-9, rtol=1e-7)


@pytest.mark.skipif(not hasattr(torch.library, "opcheck"), reason="torch.library.opcheck needs torch >= 2.4")
@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(requires_grad):
    gates, outputs, grad = make_case(9, T=11, N=3, D=6)
    gates.requires_grad_(requires_grad)
    for o in outputs:
        o.requires_grad_(requires_grad)
    torch.library.opcheck(torch.ops.opennsa.gated_sum.default, (gates, outputs, [0, 1, 2]))
    torch.library.opcheck(torch.ops.opennsa.gated_sum_backward.default,
                          (grad, gates.detach(), [o.detach() for o in outputs[:2]], [1, 2]))


def test_torch_compile_matches_eager():
    gates, outputs, grad = make_case(12, T=20, N=4, D=8)

    def f(g, a, b, c):
        return gated_sum(torch.sigmoid(g), [a, b, c], [0, 1, 2]) * 2

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    want = f(gates, *outputs)
    got = compiled(gates, *outputs)
    assert torch.equal(got, want)


def test_non_contiguous_inputs_give_the_same_bits():
    gates, outputs, grad = make_case(21, T=17, N=6, D=10)
    want = ours(gates, outputs, [0, 1, 2], grad)
    # gates as a slice of a wider tensor, outputs as transposed copies, grad expanded.
    wide = torch.randn(17, 6, 5)
    wide[:, :, 1:4] = gates
    strided = [o.transpose(0, 1).contiguous().transpose(0, 1) for o in outputs]
    assert not strided[0].is_contiguous() and not wide[:, :, 1:4].is_contiguous()
    got = ours(wide[:, :, 1:4], strided, [0, 1, 2], grad)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert all(torch.equal(a, b) for a, b in zip(got[2], want[2]))
    row = torch.randn(1, 1, 10)
    y1, g1, _ = ours(gates, outputs, [0, 1, 2], row.expand(17, 6, 10))
    y2, g2, _ = ours(gates, outputs, [0, 1, 2], row.expand(17, 6, 10).contiguous())
    assert torch.equal(g1, g2)


def test_same_bits_for_every_thread_count():
    gates, outputs, grad = make_case(30, T=600, N=8, D=64, dtype=torch.bfloat16)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(ours(gates, outputs, [0, 1, 2], grad))
    finally:
        torch.set_num_threads(before)
    for r in results[1:]:
        assert torch.equal(r[0], results[0][0]) and torch.equal(r[1], results[0][1])
        assert all(torch.equal(a, b) for a, b in zip(r[2], results[0][2]))


def test_nan_propagates_to_the_rows_it_touches():
    gates, outputs, grad = make_case(40, T=4, N=2, D=3)
    outputs[1][2, 1, 0] = float("nan")
    y, dg, _ = ours(gates, outputs, [0, 1, 2], grad)
    assert torch.isnan(y[2, 1, 0]) and torch.isnan(dg[2, 1, 1])
    finite = torch.ones_like(y, dtype=torch.bool)
    finite[2, 1, 0] = False
    assert torch.isfinite(y[finite]).all()


@pytest.mark.parametrize("bad, message", [
    (lambda g, o: (g, [], []), "outputs is empty"),
    (lambda g, o: (g, o, [0, 1]), "columns has 2 entries"),
    (lambda g, o: (g, o, [0, 1, 3]), "outside the 3 gate columns"),
    (lambda g, o: (g, o, [0, -1, 2]), "outside the 3 gate columns"),
    (lambda g, o: (g, o, [0, 1, 0]), "given twice"),
    (lambda g, o: (g, [o[0], o[1][:, :, :-1], o[2]], [0, 1, 2]), r"outputs\[1\] has shape"),
    (lambda g, o: (g, [o[0], o[1], o[2][:-1]], [0, 1, 2]), r"outputs\[2\] has shape"),
    (lambda g, o: (g, [o[0].double(), o[1], o[2]], [0, 1, 2]), r"outputs\[0\] has dtype"),
    (lambda g, o: (g[0], o, [0, 1, 2]), "gates has shape"),
    (lambda g, o: (g.to(torch.int32), o, [0, 1, 2]), "expected a floating dtype"),
])
def test_bad_input_raises_value_error(bad, message):
    gates, outputs, _ = make_case(50, T=5, N=2, D=4)
    with pytest.raises(ValueError, match=message):
        torch.ops.opennsa.gated_sum(*bad(gates, outputs))


def test_backward_checks_grad():
    gates, outputs, grad = make_case(51, T=5, N=2, D=4)
    with pytest.raises(ValueError, match="grad has shape"):
        torch.ops.opennsa.gated_sum_backward(grad[:, :, :3], gates, outputs, [0, 1, 2])
    with pytest.raises(ValueError, match="grad has shape"):
        torch.ops.opennsa.gated_sum_backward(grad.double(), gates, outputs, [0, 1, 2])


def test_the_autograd_function_for_older_torch_gives_the_same_gradients(monkeypatch):
    # torch < 2.4 has no register_autograd; gated_sum then differentiates through
    # _GatedSumFunction, which must give the op-level autograd's results bit for bit.
    import opennsa._gated_sum as module
    gates, outputs, grad = make_case(60, T=15, N=3, D=9)
    want = ours(gates, outputs[:2], [2, 0], grad)
    monkeypatch.setattr(module, "OP_AUTOGRAD", False)
    got = ours(gates, outputs[:2], [2, 0], grad)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert all(torch.equal(a, b) for a, b in zip(got[2], want[2]))
