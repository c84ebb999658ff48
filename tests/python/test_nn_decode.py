"""Decoding with opennsa.nn.NativeSparseAttention: prefill + step on a PagedKVCache reproduce
forward() on the whole sequences at every position (outputs within the forward tolerances, the
selected blocks exactly), for several sequences of different lengths at once; the cache's pages and
lengths; bad input."""

import pytest
import torch

import opennsa
from opennsa.nn import NativeSparseAttention, PagedKVCache
from test_nn_layer import assert_close, randomize

# (layer config, prefill lengths, steps): every sequence gets `steps` tokens after its prefill.
CONFIGS = [
    # GQA, Dk != Dv, l = 2d, three sequences (one starts empty, one with less than a window).
    (dict(hidden_size=32, num_heads=4, num_kv_heads=2, head_dim=16, value_head_dim=8, compress_block_size=8,
          compress_stride=4, select_block_size=16, select_block_count=4, window_size=12), [0, 5, 30], 60),
    # The paper's l, d, l' (32, 16, 64), w a prime (no divisor for the training window's blocks), k
    # larger than the blocks early on (surplus -1 slots), pages smaller than a selection block.
    (dict(hidden_size=24, num_heads=2, num_kv_heads=1, head_dim=12, compress_block_size=32, compress_stride=16,
          select_block_size=64, select_block_count=5, window_size=37), [70, 1], 120),
    # l not a multiple of d (n = floor(l / d)), l = l', MHA, one sequence.
    (dict(hidden_size=16, num_heads=2, num_kv_heads=2, head_dim=8, compress_block_size=12, compress_stride=4,
          select_block_size=12, select_block_count=3, window_size=8, bias=True), [3], 50),
]


def decode_against_forward(config, prefill, steps, dtype, tol, seed=0, page_size=16, compressed_page_size=4,
                           check_topk=True):
    layer = randomize(NativeSparseAttention(**config, dtype=torch.float64), seed).to(dtype)
    lengths = [p + steps for p in prefill]
    gen = torch.Generator().manual_seed(100 + seed)
    xs = [torch.randn(n, config["hidden_size"], generator=gen, dtype=torch.float64).to(dtype) for n in lengths]
    ends = torch.tensor(lengths).cumsum(0).tolist()
    begins = [0] + ends[:-1]
    with torch.no_grad():
        x_all = torch.cat(xs)
        want = layer(x_all, cu_seqlens=ends)
        q, k, v, _ = layer.project(x_all)
        _, want_topk = layer.branches(q, k, v, ends)
    cache = layer.new_cache(len(lengths), max(lengths), page_size=page_size,
                            compressed_page_size=compressed_page_size)
    got = layer.prefill(torch.cat([x[:p] for x, p in zip(xs, prefill)]), cache,
                        cu_seqlens=torch.tensor(prefill).cumsum(0).tolist())
    rows = torch.cat([torch.arange(b, b + p) for b, p in zip(begins, prefill)])
    assert_close("prefill", got, want[rows].double(), tol)
    assert cache.lengths == prefill
    for t in range(steps):
        x_t = torch.stack([x[p + t] for x, p in zip(xs, prefill)])
        y, topk = layer.step_with_topk(x_t, cache)
        rows = torch.tensor([b + p + t for b, p in zip(begins, prefill)])
        assert_close(f"step {t}", y, want[rows].double(), tol)
        if check_topk and want_topk is not None:
            assert torch.equal(topk, want_topk[rows]), f"step {t}: {topk.tolist()} != {want_topk[rows].tolist()}"
    assert cache.lengths == lengths
    return layer, cache, xs


@pytest.mark.parametrize("index", range(len(CONFIGS)))
def test_decoding_reproduces_forward_fp32(index):
    config, prefill, steps = CONFIGS[index]
    decode_against_forward(config, prefill, steps, torch.float32, 2e-5, seed=index)


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 8e-3), (torch.float16, 1e-3), (torch.float64, 1e-10)],
                         ids=str)
def test_decoding_reproduces_forward_other_dtypes(dtype, tol):
    # 16-bit scores may order near-tied blocks differently in the two paths, so there only the
    # outputs are compared (the fp32 and fp64 runs check the blocks).
    config, prefill, steps = CONFIGS[0]
    decode_against_forward(config, prefill, steps, dtype, tol, seed=7, check_topk=dtype == torch.float64)


@pytest.mark.parametrize("branches", [("window",), ("compressed",), ("selected",), ("compressed", "selected")],
                         ids=str)
def test_decoding_each_branch_alone(branches):
    config, prefill, steps = CONFIGS[0]
    decode_against_forward(dict(config, branches=branches), prefill, 30, torch.float32, 2e-5, seed=3)


def test_stepping_some_sequences_at_a_time():
    """A server steps whichever sequences have a token ready, in any order: each still matches
    forward at every position."""
    config, prefill, _ = CONFIGS[0]
    layer = randomize(NativeSparseAttention(**config), 11)
    gen = torch.Generator().manual_seed(12)
    lengths = [p + 40 for p in prefill]
    xs = [torch.randn(n, config["hidden_size"], generator=gen) for n in lengths]
    ends = torch.tensor(lengths).cumsum(0).tolist()
    begins = [0] + ends[:-1]
    with torch.no_grad():
        want = layer(torch.cat(xs), cu_seqlens=ends)
    cache = layer.new_cache(3, max(lengths), page_size=8, compressed_page_size=4, num_pages=20)
    layer.prefill(torch.cat([x[:p] for x, p in zip(xs, prefill)]), cache,
                  cu_seqlens=torch.tensor(prefill).cumsum(0).tolist())
    order = torch.Generator().manual_seed(13)
    while cache.lengths != lengths:
        ready = [b for b in range(3) if cache.lengths[b] < lengths[b]]
        pick = [ready[i] for i in torch.randperm(len(ready), generator=order)[:int(torch.randint(1, len(ready) + 1,
                                                                                                 (1,), generator=order))]]
        positions = [cache.lengths[b] for b in pick]
        y = layer.step(torch.stack([xs[b][n] for b, n in zip(pick, positions)]), cache, sequences=pick)
        rows = torch.tensor([begins[b] + n for b, n in zip(pick, positions)])
        assert_close(f"sequences {pick} at {positions}", y, want[rows].double(), 2e-5)
    with pytest.raises(ValueError, match="must be distinct indices"):
        layer.step(torch.randn(2, config["hidden_size"]), cache, sequences=[1, 1])
    with pytest.raises(ValueError, match="must be distinct indices"):
        layer.step(torch.randn(1, config["hidden_size"]), cache, sequences=[3])
    with pytest.raises(ValueError, match=r"expected \[2, 32\]"):
        layer.step(torch.randn(1, config["hidden_size"]), cache, sequences=[0, 2])


def test_cache_holds_the_projections_and_the_compressions():
    config, prefill, steps = CONFIGS[0]
    layer, cache, xs = decode_against_forward(config, prefill, 10, torch.float32, 2e-5, page_size=8)
    l, d = layer.compress_block_size, layer.compress_stride
    for b, x in enumerate(xs):
        with torch.no_grad():
            _, k, v, _ = layer.project(x)
            k_cmp = opennsa.npu_nsa_compress(k, layer.compress_key, l, d, actual_seq_len=[x.shape[0]])
        n = x.shape[0]
        slots = cache.raw.slots(b, torch.arange(n))
        # A step projects one row, the prefill many: the matmuls may round differently (last bit).
        assert_close(f"keys {b}", cache.key.view(-1, *k.shape[1:])[slots], k.double(), 1e-6)
        assert_close(f"values {b}", cache.value.view(-1, *v.shape[1:])[slots], v.double(), 1e-6)
        c = cache.compressed_lengths[b]
        assert c == k_cmp.shape[0]
        rows = cache.compressed.slots(b, torch.arange(c))
        assert_close(f"compressed keys {b}", cache.compressed_key.view(-1, *k.shape[1:])[rows], k_cmp.double(),
                     1e-6)
        held = (cache.block_table[b] >= 0).sum().item()
        assert held == -(-n // 8)


def test_step_is_bitwise_identical_across_thread_counts():
    config, prefill, _ = CONFIGS[0]
    outputs = []
    try:
        for threads in (1, 2):
            opennsa.set_num_threads(threads)
            layer = randomize(NativeSparseAttention(**config), 5)
            gen = torch.Generator().manual_seed(6)
            cache = layer.new_cache(3, 80)
            layer.prefill(torch.randn(sum(prefill), 32, generator=gen), cache, cu_seqlens=[0, 5, 35])
            outputs.append(torch.cat([layer.step(torch.randn(3, 32, generator=gen), cache) for _ in range(20)]))
    finally:
        opennsa.set_num_threads(0)
    assert torch.equal(outputs[0].view(torch.int32), outputs[1].view(torch.int32))


def test_pages_are_shared_and_released():
    layer = NativeSparseAttention(hidden_size=16, num_heads=2, head_dim=8, compress_block_size=8, compress_stride=4,
                                  select_block_size=8, select_block_count=2, window_size=4)
    # Room for 5 raw pages of 8 tokens in all, though each sequence may grow to 32 tokens.
    cache = PagedKVCache(layer, 2, 32, page_size=8, compressed_page_size=4, num_pages=5)
    layer.prefill(torch.randn(20, 16), cache, cu_seqlens=[17, 20])      # 3 + 1 pages
    assert sorted(cache.block_table[:, :3].flatten().tolist()) == [-1, -1, 0, 1, 2, 3]
    for _ in range(4):                                                   # sequence 1 reaches 7 tokens
        layer.step(torch.randn(2, 16), cache)
    assert cache.lengths == [21, 7]
    layer.step(torch.randn(2, 16), cache)                                # 22, 8
    with pytest.raises(RuntimeError, match="out of raw pages"):          # both need a new page, 1 is free
        for _ in range(3):
            layer.step(torch.randn(2, 16), cache)
    before = (cache.lengths[:], cache.key.clone(), cache.block_table.clone())
    with pytest.raises(RuntimeError, match="out of raw pages"):
        layer.step(torch.randn(2, 16), cache)
    assert cache.lengths == before[0] and torch.equal(cache.key, before[1]) and torch.equal(cache.block_table,
                                                                                               before[2])
    cache.release(1)
    assert cache.lengths[1] == 0 and (cache.block_table[1] < 0).all()
    with pytest.raises(ValueError, match="sequence 0 already holds"):
        layer.prefill(torch.randn(3, 16), cache, cu_seqlens=[1, 3])
    layer.prefill(torch.randn(2, 16), cache, cu_seqlens=[0, 2])           # a new sequence in slot 1
    assert cache.lengths[1] == 2
    layer.step(torch.randn(2, 16), cache)


def test_bad_decoding_input_is_rejected_and_changes_nothing():
    layer = NativeSparseAttention(hidden_size=16, num_heads=2, head_dim=8, compress_block_size=8, compress_stride=4,
                                  select_block_size=8, select_block_count=2, window_size=4)
    cache = layer.new_cache(2, 10)
    layer.prefill(torch.randn(9, 16), cache, cu_seqlens=[4, 9])
    snapshot = (cache.lengths[:], cache.key.clone(), cache.compressed_key.clone())
    other = NativeSparseAttention(hidden_size=16, num_heads=2, head_dim=4, compress_block_size=8, compress_stride=4,
                                  select_block_size=8, select_block_count=2, window_size=4)
    bad = [
        (lambda: layer.step(torch.randn(3, 16), cache), ValueError, r"expected \[2, 16\]"),
        (lambda: layer.step(torch.randn(2, 16, dtype=torch.float64), cache), ValueError, "the cache holds"),
        (lambda: other.step(torch.randn(2, 16), cache), ValueError, "made for a layer"),
        (lambda: layer.step(torch.randn(2, 16), object()), ValueError, "must be a PagedKVCache"),
        (lambda: layer.prefill(torch.randn(4, 16), cache, cu_seqlens=[4]), ValueError, "holds 2 sequences"),
        (lambda: PagedKVCache(layer, 0, 10), ValueError, "batch_size = 0"),
        (lambda: PagedKVCache(layer, 1, 10, num_pages=0), ValueError, "num_pages = 0"),
    ]
    for call, error, message in bad:
        with pytest.raises(error, match=message):
            call()
        assert cache.lengths == snapshot[0] and torch.equal(cache.key, snapshot[1])
        assert torch.equal(cache.compressed_key, snapshot[2])
    layer.step(torch.randn(2, 16), cache)                                # lengths 5, 6
    with pytest.raises(ValueError, match="sequence 1 would hold 11 tokens; max_seq_len is 10"):
        for _ in range(5):
            layer.step(torch.randn(2, 16), cache)
    forced = NativeSparseAttention(hidden_size=16, num_heads=2, head_dim=8, compress_block_size=8, compress_stride=4,
                                   select_block_size=8, select_block_count=2, window_size=4, forced_local_blocks=1)
    with pytest.raises(ValueError, match="forced_local_blocks = 1"):
        forced.step(torch.randn(2, 16), forced.new_cache(2, 10))


def test_readme_layer_example_runs():
    """README.md's layer block (training and decoding) runs as written."""
    import pathlib
    import re
    readme = pathlib.Path(__file__).resolve().parents[2] / "README.md"
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)
              if "nn.NativeSparseAttention" in b]
    assert len(blocks) == 1
    namespace = {}
    torch.manual_seed(0)
    exec(compile(blocks[0], str(readme), "exec"), namespace)
    assert namespace["y_t"].shape == (2, 256) and namespace["cache"].lengths == [1001, 501]
    assert all(p.grad is not None for p in namespace["layer"].parameters())


def test_prefill_that_does_not_fit_changes_nothing():
    layer = NativeSparseAttention(hidden_size=16, num_heads=2, head_dim=8, compress_block_size=8, compress_stride=4,
                                  select_block_size=8, select_block_count=2, window_size=4)
    cache = PagedKVCache(layer, 2, 32, page_size=8, num_pages=3)
    with pytest.raises(RuntimeError, match="out of raw pages"):         # 2 + 2 pages needed, 3 exist
        layer.prefill(torch.randn(25, 16), cache, cu_seqlens=[9, 25])
    assert cache.lengths == [0, 0] and (cache.block_table < 0).all() and len(cache.raw.free) == 3
    with pytest.raises(ValueError, match="would hold 33 tokens"):
        layer.prefill(torch.randn(33, 16), cache, cu_seqlens=[0, 33])
    layer.prefill(torch.randn(24, 16), cache, cu_seqlens=[8, 24])       # exactly 3 pages
    assert cache.lengths == [8, 16] and not cache.raw.free
