#!/usr/bin/env python3
"""Decoding-step latency of opennsa.nn.NativeSparseAttention.step on a PagedKVCache against

  dense        the same projections and gates, then scaled_dot_product_attention of the new token
               over all L cached keys and values (contiguous [B, N2, L, D] caches, enable_gqa)
  projections  only the projections, gates and o_proj of the new token (no attention): the cost
               both carry, which at batch 1 is mostly reading the weights

hidden 1024, Dk = Dv = 64, l = 32, d = 16, l' = 64, k = 16, w = 512 (the paper's values), every
sequence holding L cached tokens (random K / V rows written straight into the pages, as a prefill
of L tokens would leave them; the layer's weights are random). Each step appends one token per
sequence. Times: median of --steps steps after 3 warm-up steps. The machine's read and copy
bandwidth are measured at the start of the run.

  python bench/bench_decode.py [--L 4096,16384] [--batch 1,16] [--heads 16/1,64/4]
                               [--dtype bf16,fp32] [--steps 30] [--threads 2] [--json out.jsonl]
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

import opennsa
from opennsa._kv_cache import compressed_count
from opennsa.nn import NativeSparseAttention

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_layer import copy_bandwidth_gbs  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def read_bandwidth_gbs():
    """Sum over 512 MiB of fp32, best of 5 (torch's threads)."""
    src = torch.ones(2 ** 27)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        src.sum()
        best = min(best, time.perf_counter() - t0)
    return src.numel() * 4 / best / 1e9


def filled_cache(layer, batch, length, steps, gen):
    """A cache whose `batch` sequences hold `length` random tokens and their compressed rows, with
    room for `steps` more."""
    cache = layer.new_cache(batch, length + steps)
    n2, dk, dv = layer.num_kv_heads, layer.head_dim, layer.value_head_dim
    count = compressed_count(length, layer.compress_block_size, layer.compress_stride)
    dtype = layer.q_proj.weight.dtype
    for b in range(batch):
        cache.append(b, torch.randn(length, n2, dk, generator=gen).to(dtype),
                     torch.randn(length, n2, dv, generator=gen).to(dtype))
        cache.append_compressed(b, torch.randn(count, n2, dk, generator=gen).to(dtype),
                                torch.randn(count, n2, dv, generator=gen).to(dtype))
    return cache


def timed(fn, steps):
    for _ in range(3):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def bench_one(length, batch, heads, dtype_name, steps):
    n1, n2 = heads
    dtype = DTYPES[dtype_name]
    torch.manual_seed(0)
    layer = NativeSparseAttention(1024, n1, n2, head_dim=64, compress_block_size=32, compress_stride=16,
                                  select_block_size=64, select_block_count=16, window_size=512, dtype=dtype)
    gen = torch.Generator().manual_seed(1)
    cache = filled_cache(layer, batch, length, steps + 3, gen)
    x = torch.randn(batch, 1024, generator=gen).to(dtype)
    result = dict(L=length, batch=batch, heads=f"{n1}/{n2}", dtype=dtype_name)
    with torch.no_grad():
        result["opennsa_ms"] = timed(lambda: layer.step(x, cache), steps)

        def projections():
            q, k, v, gates = layer.project(x)
            return layer.linear(layer.o_proj, (gates[:, :, 2:3] * q[..., :64]).reshape(batch, n1 * 64))
        result["projections_ms"] = timed(projections, steps)

        keys = torch.randn(batch, n2, length, 64, generator=gen).to(dtype)
        values = torch.randn(batch, n2, length, 64, generator=gen).to(dtype)

        def dense():
            q, k, v, gates = layer.project(x)
            o = torch.nn.functional.scaled_dot_product_attention(q.view(batch, n1, 1, 64), keys, values,
                                                                 enable_gqa=True)
            return layer.linear(layer.o_proj, (gates[:, :, 2:3] * o.view(batch, n1, 64)).reshape(batch, n1 * 64))
        result["dense_ms"] = timed(dense, steps)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--L", default="4096,16384")
    p.add_argument("--batch", default="1,16")
    p.add_argument("--heads", default="16/1,64/4")
    p.add_argument("--dtype", default="bf16,fp32")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=2, help="OpenNSA's threads")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch's intra-op threads (with 2 or more, OpenNSA's regions run on them, at most "
                        "--threads; with 1, on OpenNSA's own pool; see docs/PERFORMANCE.md)")
    p.add_argument("--json", default="")
    args = p.parse_args()
    torch.set_num_threads(args.torch_threads)
    opennsa.set_num_threads(args.threads)
    print(f"read bandwidth {read_bandwidth_gbs():.1f} GB/s, copy bandwidth {copy_bandwidth_gbs(args.torch_threads):.1f} "
          f"GB/s (torch, {args.torch_threads} threads); OpenNSA {args.threads} threads", flush=True)
    print("| L | batch | heads | dtype | opennsa step ms | projections only ms | dense SDPA step ms | vs dense |")
    print("|---|---|---|---|---|---|---|---|")
    out = open(args.json, "a") if args.json else None
    for length in [int(v) for v in args.L.split(",")]:
        for batch in [int(v) for v in args.batch.split(",")]:
            for heads in [tuple(int(h) for h in v.split("/")) for v in args.heads.split(",")]:
                for dtype_name in args.dtype.split(","):
                    r = bench_one(length, batch, heads, dtype_name, args.steps)
                    ratio = r["dense_ms"] / r["opennsa_ms"]
                    print(f"| {length} | {batch} | {r['heads']} | {dtype_name} | {r['opennsa_ms']:.2f} | "
                          f"{r['projections_ms']:.2f} | {r['dense_ms']:.2f} | "
                          f"{f'{ratio:.2f}x faster' if ratio >= 1 else f'{1 / ratio:.2f}x slower'} |", flush=True)
                    if out:
                        out.write(json.dumps(r) + "\n")
    if out:
        out.close()


if __name__ == "__main__":
    main()
