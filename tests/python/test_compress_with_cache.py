"""npu_nsa_compress_infer (the decoding compression, in place on cache) against a plain-PyTorch
float64 oracle reading the paged input through the block table; in-place and aliasing
semantics, opcheck, the fake kernel, agreement with npu_nsa_compress, errors (nothing written)
and thread-count determinism. Tolerances: docs/spec/README.md (compress outputs)."""

import random

import pytest
import torch

import opennsa

TOL = {torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float32: 2e-5, torch.float64: 1e-12}


def triggered(length, l, d):
    return length >= l and (length - l) % d == 0


def reference_rows(input, weight, block_table, lens, l, d):
    """{batch: [N, D] float64} for every triggered batch: the newest window's weighted sum."""
    P = input.shape[1]
    rows = {}
    for b, L in enumerate(lens):
        if not triggered(L, l, d):
            continue
        pos = torch.arange(L - l, L)
        pages = block_table[b, pos // P].long()
        window = input[pages, pos % P].double()  # [l, N, D]
        rows[b] = (weight.double()[:, :, None] * window).sum(0)
    return rows


def make_case(seed, *, lens, n, dh, l, d, P, dtype=torch.bfloat16, spare_rows=3):
    gen = torch.Generator().manual_seed(seed)
    rnd = random.Random(seed)
    pages_of = [(L + P - 1) // P for L in lens]
    num_pages = sum(pages_of) + 2
    cols = max(pages_of + [1])
    order = list(range(num_pages))
    rnd.shuffle(order)
    block_table = torch.full((len(lens), cols), -1, dtype=torch.int32)
    k = 0
    for b, used in enumerate(pages_of):
        for j in range(used):
            block_table[b, j] = order[k]
            k += 1
    input = torch.randn(num_pages, P, n, dh, generator=gen).to(dtype)
    weight = (torch.randn(l, n, generator=gen) / l ** 0.5).to(dtype)
    R = len(lens) + spare_rows
    free = list(range(R))
    rnd.shuffle(free)
    slots = torch.tensor([free[b] if triggered(L, l, d) else -1 for b, L in enumerate(lens)], dtype=torch.int32)
    cache = torch.randn(R, n, dh, generator=gen).to(dtype)
    return input, weight, slots, block_table, cache


def call(input, weight, slots, block_table, lens, l, d, P, cache):
    return opennsa.npu_nsa_compress_infer(input, weight, slots, l, d, P, block_table=block_table,
                                          actual_seq_len=lens, cache=cache)


def bits(t):
    return t.view(torch.int16) if t.element_size() == 2 else t


def rel_close(got, ref, tol):
    got, ref = got.double(), ref.double()
    err = (got - ref).norm() / max(ref.norm().item(), 1e-12)
    assert err <= tol, f"relative error {err:.3g} (tol {tol})"


CASES = [
    dict(lens=[32, 48, 40, 144, 0], n=4, dh=192, l=32, d=16, P=64),
    dict(lens=[6, 7, 10, 3], n=3, dh=13, l=6, d=4, P=5),
    dict(lens=[9, 5, 5], n=1, dh=1, l=5, d=1, P=1),
]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_matches_reference_in_place(dtype, case):
    c = CASES[case]
    input, weight, slots, table, cache = make_case(10 + case, dtype=dtype, **c)
    saved = [t.clone() for t in (input, weight, slots, table, cache)]
    out = call(input, weight, slots, table, c["lens"], c["l"], c["d"], c["P"], cache)
    assert out is cache  # in place: the cache object itself comes back
    ref = reference_rows(input, weight, table, c["lens"], c["l"], c["d"])
    written = set()
    for b, row in ref.items():
        written.add(int(slots[b]))
        rel_close(cache[int(slots[b])], row, TOL[dtype])
    for r in range(cache.shape[0]):
        if r not in written:
            assert torch.equal(bits(cache[r]), bits(saved[4][r])), f"row {r} changed"
    for before, after in zip(saved[:4], (input, weight, slots, table)):
        assert torch.equal(bits(before), bits(after))


def test_token_by_token_equals_training_compress():
    """Decoding one token at a time fills the cache with exactly npu_nsa_compress's rows."""
    l, d, P, n, dh, T = 8, 4, 8, 2, 24, 45
    input, weight, _, table, _ = make_case(3, lens=[T], n=n, dh=dh, l=l, d=d, P=P)
    seq = input[table[0, torch.arange(T) // P].long(), torch.arange(T) % P]  # [T, N, D]
    expected = opennsa.npu_nsa_compress(seq, weight, l, d, actual_seq_len=[T])
    cache = torch.full_like(expected, float("nan"))
    for L in range(1, T + 1):
        slot = (L - l) // d if triggered(L, l, d) else -1
        call(input, weight, torch.tensor([slot], dtype=torch.int32), table, [L], l, d, P, cache)
    assert torch.equal(bits(cache), bits(expected))


@pytest.mark.skipif(not hasattr(torch.library, "opcheck"), reason="torch.library.opcheck needs torch >= 2.4")
def test_opcheck():
    c = CASES[1]
    input, weight, slots, table, cache = make_case(5, **c)
    torch.library.opcheck(torch.ops.opennsa.compress_infer.cache,
                          (input, weight, slots, c["l"], c["d"], c["P"]),
                          dict(block_table=table, actual_seq_len=c["lens"], cache=cache))


def test_fake_kernel_returns_the_cache():
    from torch._subclasses.fake_tensor import FakeTensorMode
    c = CASES[0]
    args = make_case(6, **c)
    with FakeTensorMode() as mode:
        input, weight, slots, table, cache = (mode.from_tensor(t) for t in args)
        out = call(input, weight, slots, table, c["lens"], c["l"], c["d"], c["P"], cache)
        assert out.shape == cache.shape and out.dtype == cache.dtype


def test_same_bits_for_every_thread_count():
    c = dict(lens=[32, 48, 64], n=4, dh=200, l=32, d=16, P=16)
    results = []
    for threads in (1, 2, 3):
        opennsa.set_num_threads(threads)
        input, weight, slots, table, cache = make_case(8, **c)
        call(input, weight, slots, table, c["lens"], c["l"], c["d"], c["P"], cache)
        results.append(bits(cache).clone())
    opennsa.set_num_threads(0)
    assert all(torch.equal(results[0], r) for r in results[1:])


def test_not_differentiable():
    c = CASES[1]
    input, weight, slots, table, cache = make_case(9, **c)
    input.requires_grad_(True)
    with pytest.raises(RuntimeError):
        out = call(input, weight, slots, table, c["lens"], c["l"], c["d"], c["P"], cache)
        out.sum().backward()


@pytest.mark.parametrize("what", ["slot out of range", "slot twice", "page out of range", "no block table",
                                  "no lengths", "table int64", "rank 3 input", "length past its pages",
                                  "wrong page size"])
def test_errors_name_the_parameter_and_write_nothing(what):
    c = dict(CASES[1])
    input, weight, slots, table, cache = make_case(12, **c)
    lens, P = list(c["lens"]), c["P"]
    kwargs = dict(block_table=table, actual_seq_len=lens, cache=cache)
    expect = {"slot out of range": "slotMapping[0]", "slot twice": "is also the slot of batch",
              "page out of range": "blockTableOptional[0, 1]", "no block table": "block_table is required",
              "no lengths": "actual_seq_len is required", "table int64": "blockTableOptional: dtype int64",
              "rank 3 input": "input: rank 3", "length past its pages": "blockTableOptional: batch 3 holds",
              "wrong page size": "pageBlockSize = 6"}[what]
    if what == "slot out of range":
        slots[0] = cache.shape[0]
    elif what == "slot twice":
        slots[2] = slots[0]  # batch 2 (L = 10) is triggered too
    elif what == "page out of range":
        table[0, 1] = input.shape[0]  # batch 0 (L = 6) reads [0, 6): pages 0 and 1
    elif what == "no block table":
        kwargs["block_table"] = None
    elif what == "no lengths":
        kwargs["actual_seq_len"] = None
    elif what == "table int64":
        kwargs["block_table"] = table.long()
    elif what == "rank 3 input":
        input = input.flatten(0, 1)
    elif what == "length past its pages":
        lens[3] = table.shape[1] * P + 1
    elif what == "wrong page size":
        P = 6
    saved = cache.clone()
    with pytest.raises(ValueError, match=expect.replace("[", r"\[").replace("]", r"\]")):
        opennsa.npu_nsa_compress_infer(input, weight, slots, c["l"], c["d"], P, **kwargs)
    assert torch.equal(bits(cache), bits(saved))
