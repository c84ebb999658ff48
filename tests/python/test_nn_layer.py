"""opennsa.nn.NativeSparseAttention against the plain-PyTorch layer of nsa_layer_reference.py
(output, top-k and the gradient of every parameter and of the input, on random configurations),
thread-count determinism, validation, torch.compile and a DistributedDataParallel step."""

import os
import tempfile

import pytest
import torch

import opennsa
from opennsa.nn import (NativeSparseAttention, cpu_has_fast_matmul, decoding_rule_topk, forced_block_mask,
                        selection_block_counts)
from nsa_layer_reference import nsa_layer


def assert_close(name, got, want, tol, floor=0.0):
    """Relative Frobenius error <= tol and max error <= 4 tol (relative to the largest entry), both
    against max(reference, floor): a gradient that is 0 in exact arithmetic (the k bias: softmax
    ignores a shift shared by all keys) is compared on the scale of the others."""
    err = got.double() - want
    rel_fro = err.norm().item() / max(want.norm().item(), floor)
    rel_max = err.abs().max().item() / max(want.abs().max().item(), floor)
    assert rel_fro <= tol and rel_max <= 4 * tol, f"{name}: rel Frobenius {rel_fro:.3g}, rel max {rel_max:.3g}, tol {tol}"


def randomize(layer, seed):
    """Random parameters everywhere (the default compression weights are constant): random data
    makes every gradient term visible."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * (p.shape[-1] ** -0.5))
    return layer


def random_config(seed):
    gen = torch.Generator().manual_seed(4000 + seed)
    r = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=gen))
    n2 = r(1, 2)
    d = r(1, 4)
    l = d * r(1, 3)
    sel = d * max(r(1, 4), -(-l // d))
    dk = r(4, 12)
    lengths = [r(0, 80) for _ in range(r(1, 3))]
    lengths[0] = max(lengths[0], 1)
    seq = torch.tensor(lengths).cumsum(0).tolist()  # cumulative ends
    return dict(hidden_size=r(8, 24), num_heads=n2 * r(1, 4), num_kv_heads=n2, head_dim=dk, value_head_dim=r(2, dk),
                compress_block_size=l, compress_stride=d, select_block_size=sel, select_block_count=r(1, 6),
                window_size=r(1, 20), forced_local_blocks=r(0, 2), bias=r(0, 1) == 1), seq


FIXED = [
    # NSA-like proportions at small sizes: GQA, Dk != Dv, two batches plus an empty one.
    (dict(hidden_size=32, num_heads=8, num_kv_heads=2, head_dim=16, value_head_dim=8, compress_block_size=8,
          compress_stride=4, select_block_size=16, select_block_count=3, window_size=12), [90, 90, 220]),
    # The paper's l, d, l' (32, 16, 64) on one batch of 300 tokens, G = 4, MHA-sized heads.
    (dict(hidden_size=24, num_heads=4, num_kv_heads=1, head_dim=12, compress_block_size=32, compress_stride=16,
          select_block_size=64, select_block_count=4, window_size=40), [300]),
    # Batches shorter than l (no compressed token, every topk slot -1) beside a long one.
    (dict(hidden_size=16, num_heads=2, num_kv_heads=2, head_dim=8, compress_block_size=16, compress_stride=8,
          select_block_size=16, select_block_count=2, window_size=5, bias=True), [10, 80, 83]),
]


def run_layer(layer, x, seq, fn):
    """Output, gradients of the input and of every parameter (by name) for loss = sum(y * dy)."""
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    y = fn(layer, x, seq)
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64).to(y.dtype)
    y.backward(dy)
    grads = {name: None if p.grad is None else p.grad.detach().clone() for name, p in layer.named_parameters()}
    return y.detach(), x.grad, grads


# float64: the output to rounding; the gradients to 1e-6, because the attention backwards rebuild
# the probabilities from the forward's fp32 softmax statistics (their contract) in every dtype.
def check_against_reference(config, seq, seed, dtype=torch.float64, tol=(1e-10, 1e-6)):
    layer = randomize(NativeSparseAttention(**config, dtype=torch.float64), seed)
    x = torch.randn(seq[-1], config["hidden_size"], generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    # The reference ranks its own blocks; the layer's ranking must agree with it in float64.
    with torch.no_grad():
        q, k, v, _ = layer.project(x)
        _, topk = layer.branches(q, k, v, seq)
        _, ref_topk = nsa_layer(layer, x, seq, return_topk=True)
    assert topk is None if layer.branches_used == ("window",) else torch.equal(topk, ref_topk)
    ref = run_layer(layer, x, seq, lambda m, x, s: nsa_layer(m, x, s))
    ours_layer = layer.to(dtype)
    ours = run_layer(ours_layer, x.to(dtype), seq, lambda m, x, s: m(x, cu_seqlens=s))
    assert_close("y", ours[0], ref[0], tol[0])
    assert_close("dx", ours[1], ref[1], tol[1])
    floor = 1e-3 * ref[1].norm().item()
    for name, want in ref[2].items():
        got = ours[2][name]
        if want is None:  # a branch left out: its parameters are unused in both
            assert got is None and "compress" in name, name
            continue
        assert got is not None and torch.isfinite(got).all(), name
        assert_close(f"d{name}", got, want, tol[1], floor)
    return ours


@pytest.mark.parametrize("index", range(len(FIXED)))
def test_fixed_configs_match_reference_fp64(index):
    config, seq = FIXED[index]
    check_against_reference(config, seq, seed=index)


@pytest.mark.parametrize("seed", range(10))
def test_random_configs_match_reference_fp64(seed):
    config, seq = random_config(seed)
    check_against_reference(config, seq, seed=seed)


def test_gradients_reach_every_parameter_and_the_input():
    config, seq = FIXED[0]
    _, dx, grads = check_against_reference(config, seq, seed=3)
    assert dx.abs().sum() > 0
    for name, g in grads.items():
        assert g.abs().sum() > 0, f"{name} gets no gradient"


@pytest.mark.parametrize("dtype,tol,float32_projections", [
    (torch.float32, (1e-5, 1e-4), None),
    (torch.bfloat16, (2e-2, 5e-2), True), (torch.bfloat16, (2e-2, 5e-2), False),
    (torch.float16, (3e-3, 8e-3), True), (torch.float16, (3e-3, 8e-3), False)], ids=str)
def test_low_precision_matches_reference(dtype, tol, float32_projections):
    """The layer in fp32 / bf16 / fp16 against the float64 reference (given the layer's own top-k,
    which rounding may legitimately reorder where two blocks score almost the same), with the
    16-bit projections computed both ways (torch's 16-bit matmul, or fp32 rounded once)."""
    config, seq = FIXED[0]
    layer = randomize(NativeSparseAttention(**config, dtype=torch.float64), 1)
    x = torch.randn(seq[-1], config["hidden_size"], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    low = NativeSparseAttention(**config, float32_projections=float32_projections, dtype=dtype)
    low.load_state_dict(layer.state_dict())
    with torch.no_grad():
        q, k, v, _ = low.project(x.to(dtype))
        _, topk = low.branches(q, k, v, seq)
    ref = run_layer(layer, x, seq, lambda m, x, s: nsa_layer(m, x, s, topk=topk))
    ours = run_layer(low, x.to(dtype), seq, lambda m, x, s: m(x, cu_seqlens=s))
    assert ours[0].dtype == dtype
    assert_close("y", ours[0], ref[0], tol[0])
    assert_close("dx", ours[1], ref[1], tol[1])
    for name, want in ref[2].items():
        assert_close(f"d{name}", ours[2][name], want, tol[1], 1e-3 * ref[1].norm().item())


@pytest.mark.parametrize("branches", [("window",), ("compressed",), ("selected", "window")], ids=str)
def test_branch_subsets_match_reference(branches):
    config, seq = FIXED[0]
    check_against_reference(dict(config, branches=branches), seq, seed=5)


def test_padding_rows_and_leading_zero():
    config, seq = FIXED[0]
    layer = randomize(NativeSparseAttention(**config, dtype=torch.float64), 0)
    x = torch.randn(seq[-1] + 4, config["hidden_size"], dtype=torch.float64)
    cu = torch.tensor(seq)
    y = layer(x, cu_seqlens=cu)
    assert (y[seq[-1]:] == 0).all()  # no bias: padding rows attend to nothing
    assert torch.equal(layer(x, cu_seqlens=[0] + cu.tolist()), y)


def test_bitwise_identical_for_1_2_3_threads():
    config, seq = FIXED[1]
    layer = randomize(NativeSparseAttention(**config, dtype=torch.float64), 4).float()
    x = torch.randn(seq[-1], config["hidden_size"])
    runs = []
    try:
        for threads in (1, 2, 3):
            opennsa.set_num_threads(threads)
            y, dx, grads = run_layer(layer, x, seq, lambda m, x, s: m(x, cu_seqlens=s))
            runs.append([y, dx] + list(grads.values()))
    finally:
        opennsa.set_num_threads(0)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert torch.equal(a.view(torch.int32), b.view(torch.int32))


def test_forced_block_mask():
    # l = 4, d = 2, l' = 4: position i sees C_i = (i - 3) // 2 + 1 compressed tokens (from i = 3),
    # whose span [0, 2 C_i + 2) meets NS(i) = ceil((2 C_i + 2) / 4) selection blocks.
    counts = selection_block_counts(torch.arange(12), 4, 2, 4)
    assert counts.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3]
    mask = forced_block_mask(rows=12, blocks=3, compress_block_size=4, compress_stride=2, select_block_size=4,
                             local_blocks=2)
    want = torch.zeros(12, 3, dtype=torch.bool)
    for i, ns in enumerate(counts.tolist()):
        for j in (0, ns - 1, ns - 2):
            if 0 <= j < 3:
                want[i, j] = True
    assert torch.equal(mask, want)


def test_decoding_rule_topk_lists_forced_then_ranked_below_ns():
    # Rows with NS = 5, 4 (its last forced block 3 beyond a training ranking of blocks 0..2), 2, 0.
    ranked = torch.tensor([[[0, 3, 4, 1, 2]], [[0, 2, 1, -1, -1]], [[0, 1, 2, 3, -1]], [[0, 1, 2, 3, 4]]],
                          dtype=torch.int32)
    got = decoding_rule_topk(ranked, torch.tensor([5, 4, 2, 0]), local_blocks=2)
    assert got.tolist() == [[[0, 3, 4, 1, 2]], [[0, 2, 3, 1, -1]], [[0, 1, -1, -1, -1]], [[-1] * 5]]


BAD_CONFIGS = [
    (dict(num_heads=6, num_kv_heads=4), "num_heads = 6 must be a multiple of num_kv_heads = 4"),
    (dict(value_head_dim=20), "value_head_dim = 20 must be <= head_dim = 16"),
    (dict(compress_stride=16, compress_block_size=8), "compress_stride = 16 must be <= compress_block_size = 8"),
    (dict(select_block_size=18), "select_block_size = 18 must be a multiple of compress_stride = 4"),
    (dict(select_block_size=4, compress_block_size=8), "select_block_size = 4 must be a multiple"),
    (dict(window_size=0), "window_size = 0 must be an int >= 1"),
    (dict(select_block_count=0), "select_block_count = 0"),
    (dict(forced_local_blocks=-1), "forced_local_blocks = -1"),
    (dict(branches=("windows",)), "branches = ('windows',)"),
    (dict(float32_projections=1), "float32_projections = 1 must be None (automatic), True or False"),
]


@pytest.mark.parametrize("bad,message", BAD_CONFIGS, ids=[m for _, m in BAD_CONFIGS])
def test_config_validation(bad, message):
    config = dict(FIXED[0][0], **bad)
    with pytest.raises(ValueError, match="NativeSparseAttention: ") as err:
        NativeSparseAttention(**config)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("x_shape,cu,message", [
    ((10, 31), None, "x has shape (10, 31); expected [T, 32]"),
    ((10,), None, "x has shape (10,)"),
    ((10, 32), [4, 3], "cu_seqlens[1] = 3 is below cu_seqlens[0] = 4"),
    ((10, 32), [11], "cu_seqlens[0] = 11 exceeds the 10 rows"),
    ((10, 32), torch.tensor([1.0]), "cu_seqlens must be a list of ints"),
])
def test_input_validation(x_shape, cu, message):
    layer = NativeSparseAttention(**FIXED[0][0])
    with pytest.raises(ValueError) as err:
        layer(torch.randn(x_shape), cu_seqlens=cu)
    assert message in str(err.value)


class TinyModel(torch.nn.Module):
    """Embedding-free model around the layer, for torch.compile and DDP."""

    def __init__(self, config):
        super().__init__()
        self.inp = torch.nn.Linear(8, config["hidden_size"])
        self.attn = NativeSparseAttention(**config)
        self.out = torch.nn.Linear(config["hidden_size"], 1)

    def forward(self, x, cu_seqlens):
        h = self.inp(x)
        return self.out(h + self.attn(h, cu_seqlens=cu_seqlens)).squeeze(-1)


def test_torch_compile_fullgraph():
    config, seq = FIXED[0]
    torch.manual_seed(0)
    model = TinyModel(config)
    x = torch.randn(seq[-1], 8)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    loss = compiled(x, seq).square().mean()
    loss.backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    want_loss = model(x, seq).square().mean()
    want_loss.backward()
    assert torch.allclose(loss, want_loss, rtol=1e-6, atol=0)
    for n, p in model.named_parameters():
        assert torch.allclose(got[n], p.grad, rtol=1e-5, atol=1e-7), n


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_float32_projections_round_once_from_fp32(dtype):
    """float32_projections=True: every linear map is F.linear in fp32 on the cast input and
    parameters, rounded once to the input dtype (bit for bit); False: the module itself; None:
    whichever cpu_has_fast_matmul picks. fp32 inputs are never cast. Gradients keep the
    parameters' dtype."""
    config, seq = FIXED[0]
    gen = torch.Generator().manual_seed(11)
    layers = {}
    for mode in (True, False, None):
        layers[mode] = randomize(NativeSparseAttention(**dict(config, bias=True), float32_projections=mode), 3).to(dtype)
    x = torch.randn(seq[-1], config["hidden_size"], generator=gen).to(dtype)
    w, b = layers[True].q_proj.weight, layers[True].q_proj.bias
    fp32 = torch.nn.functional.linear(x.float(), w.float(), b.float()).to(dtype)
    native = layers[False].q_proj(x)
    # Which path ran, seen whatever the CPU: the fp32 path never calls the nn.Linear modules (on
    # a CPU with a bf16 dot, such as AVX512_BF16, native bf16 and the fp32 path can agree bit for
    # bit, so equal outputs alone would not tell them apart).
    ran = []  # the modes whose q_proj module ran, once per call
    for mode in (True, False):
        layers[mode].q_proj.register_forward_hook(lambda *_, mode=mode: ran.append(mode))
    assert torch.equal(layers[True].project(x)[0].reshape(x.shape[0], -1), fp32)
    assert torch.equal(layers[False].project(x)[0].reshape(x.shape[0], -1), native)
    assert ran == [False]
    auto = layers[None].project(x)[0].reshape(x.shape[0], -1)
    assert torch.equal(auto, native if cpu_has_fast_matmul(dtype) else fp32)
    assert layers[None].projects_in_float32(x) == (not cpu_has_fast_matmul(dtype))
    assert not layers[True].projects_in_float32(x.float())
    y = layers[True](x.requires_grad_(True), cu_seqlens=seq)
    y.backward(torch.randn(y.shape, generator=gen).to(dtype))
    assert y.dtype == dtype and x.grad.dtype == dtype
    for name, p in layers[True].named_parameters():
        assert p.grad is not None and p.grad.dtype == dtype and p.grad.abs().sum() > 0, name


def test_torch_compile_fullgraph_bf16_automatic_projections():
    """The automatic choice of projections traces into one graph too."""
    config, seq = FIXED[0]
    torch.manual_seed(0)
    model = TinyModel(config).to(torch.bfloat16)
    x = torch.randn(seq[-1], 8, dtype=torch.bfloat16)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    got = compiled(x, seq)
    assert torch.equal(got, model(x, seq))


def _ddp_worker(rank, world, init_file, config, seq_per_rank, result_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    opennsa.set_num_threads(1)
    torch.manual_seed(0)
    model = TinyModel(config).double()
    ddp = DistributedDataParallel(model)
    gen = torch.Generator().manual_seed(100 + rank)
    seq = seq_per_rank[rank]
    x = torch.randn(seq[-1], 8, generator=gen, dtype=torch.float64)
    ddp(x, seq).square().mean().backward()
    torch.save({n: p.grad for n, p in model.named_parameters()}, os.path.join(result_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_distributed_data_parallel_step():
    config = dict(FIXED[0][0])
    seq_per_rank = [[60, 110], [40, 115]]  # cumulative ends
    with tempfile.TemporaryDirectory() as tmp:
        torch.multiprocessing.spawn(_ddp_worker, args=(2, os.path.join(tmp, "init"), config, seq_per_rank, tmp),
                                    nprocs=2, join=True)
        grads = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(2)]
    torch.manual_seed(0)
    model = TinyModel(config).double()
    loss = 0
    for rank, seq in enumerate(seq_per_rank):
        gen = torch.Generator().manual_seed(100 + rank)
        x = torch.randn(seq[-1], 8, generator=gen, dtype=torch.float64)
        loss = loss + model(x, seq).square().mean() / 2  # DDP averages the ranks' gradients
    loss.backward()
    for name, p in model.named_parameters():
        assert torch.equal(grads[0][name], grads[1][name]), name
        assert torch.allclose(grads[0][name], p.grad, rtol=1e-12, atol=1e-14), name


def test_recall_example_smoke():
    """examples/python/nsa_recall.py at tiny sizes: both models train a few steps, evaluate, and
    decode the queries from the cache with forward's answers."""
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python", "nsa_recall.py")
    spec = importlib.util.spec_from_file_location("nsa_recall", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    try:
        results, decoded = example.main(["--smoke", "--steps", "3", "--plot", "", "--threads", "1"])
    finally:
        opennsa.set_num_threads(0)
    assert set(results) == {"nsa", "window-only"} and all(0.0 <= a <= 1.0 for a in results.values())
    for name, run in decoded.items():
        assert run["queries"] == 8 and run["same_as_forward"] == run["queries"], (name, run)
