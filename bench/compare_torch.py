#!/usr/bin/env python3
"""OpenNSA's PyTorch operator against what a PyTorch user has without it, forward + backward,
2 threads, same inputs:

  plain    selected attention written in PyTorch (gather the C selected blocks of bs keys per
           query, matmul, masked softmax, matmul; autograd backward): tests/python/torch_reference.py
  opennsa  opennsa.npu_nsa_select_attention, out.backward()
  sdpa     torch.nn.functional.scaled_dot_product_attention (backward included) on *dense*
           attention with the same number of keys per query: the T query tokens are cut into
           T / (C*bs) independent sequences of C*bs = 1024 tokens, each attending to all 1024 keys of
           its own sequence (no mask), N1 query heads over N2 kv heads (enable_gqa). Every query then
           sees exactly C*bs keys, the count the FLOP convention assumes for the selected attention.
           "sdpa-math" is the default dispatch: PyTorch's CPU flash kernel needs Dk == Dv, so with
           Dk=192, Dv=128 SDPA falls back to its math path. "sdpa-flash" zero-pads V to Dk (inside
           the timed region) so that the flash kernel runs; its GFLOP/s count only the useful Dv.

FLOPs as docs/DESIGN.md counts them: forward 2*T*N1*C*bs*(Dk+Dv), backward 2*T*N1*C*bs*(3*Dk+2*Dv).
Each configuration runs in its own subprocess (peak RSS = that process's ru_maxrss); inputs come
from the same seed in every subprocess, so all implementations see identical tensors. Selection as
opennsa-bench makes it (NSA-like): block 0, the local block, then distinct random earlier blocks,
-1 where a token has fewer than C visible blocks; causal.

  OPENNSA_NUM_THREADS=2 python bench/compare_torch.py [--quick] [--json results.jsonl]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

THREADS = 2
SHAPES = {
    "A": dict(T=4096, N1=16, N2=1, Dk=192, Dv=128, bs=64, C=16),
    "B": dict(T=8192, N1=64, N2=4, Dk=192, Dv=128, bs=64, C=16),
}
MEMORY_LIMIT_GIB = 24.0


def flops(s):
    pairs = 2 * s["T"] * s["N1"] * s["C"] * s["bs"]
    return pairs * (s["Dk"] + s["Dv"]), pairs * (3 * s["Dk"] + 2 * s["Dv"])


def plain_peak_estimate_gib(s, elem):
    """Dominant live tensors of the plain implementation through its backward: the gathered K and
    V blocks and their gradients (T*N2*C*bs*(Dk+Dv) each), plus about six [T, N1, C*bs] score-sized
    tensors (scores, mask, probabilities and their gradients)."""
    keys = s["T"] * s["C"] * s["bs"]
    gathered = keys * s["N2"] * (s["Dk"] + s["Dv"]) * elem
    scores = keys * s["N1"] * 4
    return (2 * gathered + 6 * scores) / 2**30


# ----------------------------------------------------------------------------------------------
# Worker: one implementation, one shape, one dtype.

def make_inputs(torch, s, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    T, N1, N2, Dk, Dv, bs, C = (s[k] for k in ("T", "N1", "N2", "Dk", "Dv", "bs", "C"))
    q = torch.randn(T, N1, Dk, generator=gen).to(dtype)
    k = torch.randn(T, N2, Dk, generator=gen).to(dtype)
    v = torch.randn(T, N2, Dv, generator=gen).to(dtype)
    d_out = torch.randn(T, N1, Dv, generator=gen).to(dtype)
    # NSA-like causal selection: block 0, the local block, random distinct earlier blocks.
    nblocks = (T + bs - 1) // bs
    local = (torch.arange(T) // bs).view(T, 1, 1)
    blocks = torch.arange(nblocks).view(1, 1, nblocks)
    key = torch.rand(T, N2, nblocks, generator=gen)
    key = key.masked_fill((blocks == 0) | (blocks >= local), 2.0)  # candidates: 1 .. local-1
    earlier = key.argsort(dim=-1)[..., : C - 2]
    earlier = earlier.masked_fill(torch.gather(key, -1, earlier) > 1.0, -1)
    first = torch.zeros(T, N2, 1, dtype=torch.long)
    local_col = local.expand(T, N2, 1).masked_fill(local.expand(T, N2, 1) == 0, -1)
    topk = torch.cat([first, local_col, earlier], dim=-1).to(torch.int32)
    return q, k, v, d_out, topk


def run_worker(cfg):
    os.environ.setdefault("OPENNSA_NUM_THREADS", str(THREADS))
    import torch
    torch.set_num_threads(THREADS)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[cfg["dtype"]]
    s = SHAPES[cfg["shape"]]
    q, k, v, d_out, topk = make_inputs(torch, s, dtype)
    scale = s["Dk"] ** -0.5
    impl = cfg["impl"]

    if impl == "opennsa":
        import opennsa
        assert opennsa.get_num_threads() == THREADS

        def forward(q, k, v):
            return opennsa.npu_nsa_select_attention(q, k, v, topk, scale, s["N1"], s["bs"], s["C"])[0]
    elif impl == "plain":
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
        import torch_reference

        def forward(q, k, v):
            return torch_reference.select_attention(q, k, v, topk, scale, s["bs"])
    else:  # dense SDPA over sequences of C*bs tokens
        import torch.nn.functional as F
        from contextlib import nullcontext

        from torch.nn.attention import SDPBackend, sdpa_kernel
        seq = s["C"] * s["bs"]
        nseq = s["T"] // seq
        backend = (lambda: sdpa_kernel(SDPBackend.FLASH_ATTENTION)) if impl == "sdpa-flash" else nullcontext

        def to_bhsd(x):  # [T, H, D] -> [T/seq, H, seq, D]
            return x.view(nseq, seq, x.shape[1], x.shape[2]).transpose(1, 2)

        def forward(q, k, v):
            vv = F.pad(v, (0, s["Dk"] - s["Dv"])) if impl == "sdpa-flash" else v
            with backend():
                o = F.scaled_dot_product_attention(to_bhsd(q), to_bhsd(k), to_bhsd(vv), scale=scale,
                                                   enable_gqa=True)
            return o[..., : s["Dv"]].transpose(1, 2).reshape(s["T"], s["N1"], s["Dv"])

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fwd_times, bwd_times = [], []
    started = time.perf_counter()
    for it in range(cfg["max_iters"]):
        qq, kk, vv = (x.detach().requires_grad_(True) for x in (q, k, v))
        t0 = time.perf_counter()
        out = forward(qq, kk, vv)
        t1 = time.perf_counter()
        out.backward(d_out)
        t2 = time.perf_counter()
        fwd_times.append(t1 - t0)
        bwd_times.append(t2 - t1)
        del out, qq, kk, vv
        elapsed = time.perf_counter() - started
        if (elapsed > cfg["budget_s"] and len(fwd_times) >= 2) or (it == 0 and elapsed > cfg["single_run_s"]):
            break  # slow configurations: fewer runs (a single one past single_run_s, reported as n=1)
    # The first iteration is a warm-up whenever there are others.
    if len(fwd_times) > 1:
        fwd_times, bwd_times = fwd_times[1:], bwd_times[1:]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(cfg, fwd_s=statistics.median(fwd_times), bwd_s=statistics.median(bwd_times),
                total_s=statistics.median([a + b for a, b in zip(fwd_times, bwd_times)]),
                n=len(fwd_times), peak_rss_gib=peak / 2**20, base_rss_gib=base_rss / 2**20,
                torch_version=torch.__version__)


# ----------------------------------------------------------------------------------------------
# Driver.

def configurations(quick):
    runs = []
    shapes = ["A"] if quick else ["A", "B"]
    for shape in shapes:
        for dtype in ("bf16", "fp32"):
            for impl in ("plain", "opennsa", "sdpa-math", "sdpa-flash"):
                if shape == "B" and impl == "sdpa-math":
                    continue  # the flash path is the better dense baseline; math at B takes minutes
                runs.append(dict(impl=impl, shape=shape, dtype=dtype, max_iters=4, budget_s=60,
                                 single_run_s=40))
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="shape A only")
    parser.add_argument("--json", help="append one JSON line per configuration to this file")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))), flush=True)
        return

    env = dict(os.environ, OPENNSA_NUM_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS))
    results = []
    for cfg in configurations(args.quick):
        s = SHAPES[cfg["shape"]]
        label = f"{cfg['impl']:10s} {cfg['shape']} {cfg['dtype']}"
        if cfg["impl"] == "plain":
            need = plain_peak_estimate_gib(s, 2 if cfg["dtype"] == "bf16" else 4)
            if need > 0.8 * MEMORY_LIMIT_GIB:
                print(f"{label}: skipped, needs about {need:.0f} GiB (> 80% of {MEMORY_LIMIT_GIB:.0f} GiB)", flush=True)
                results.append(dict(cfg, skipped=f"needs about {need:.0f} GiB"))
                continue
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(cfg)],
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{label}: FAILED\n{proc.stderr[-2000:]}", flush=True)
            results.append(dict(cfg, skipped="failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1]))
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{label}: fwd {r['fwd_s']*1e3:8.1f} ms  bwd {r['bwd_s']*1e3:8.1f} ms  "
              f"peak RSS {r['peak_rss_gib']:.2f} GiB  (n={r['n']})", flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(r) + "\n")
    print_table(results)


def print_table(results):
    plain = {(r["shape"], r["dtype"]): r for r in results if r["impl"] == "plain" and "skipped" not in r}
    print("\n| shape | dtype | implementation | fwd ms | bwd ms | fwd+bwd ms | fwd GFLOP/s | bwd GFLOP/s "
          "| fwd+bwd GFLOP/s | speed-up vs plain | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        s = SHAPES[r["shape"]]
        shape = f"{r['shape']}: T={s['T']} N1={s['N1']} N2={s['N2']}"
        if "skipped" in r:
            print(f"| {shape} | {r['dtype']} | {r['impl']} | – | – | – | – | – | – | – | {r['skipped']} |")
            continue
        f_fwd, f_bwd = flops(s)
        base = plain.get((r["shape"], r["dtype"]))
        speedup = f"{base['total_s'] / r['total_s']:.1f}x" if base else "–"
        print(f"| {shape} | {r['dtype']} | {r['impl']} | {r['fwd_s']*1e3:.0f} | {r['bwd_s']*1e3:.0f} | "
              f"{r['total_s']*1e3:.0f} | {f_fwd / r['fwd_s'] / 1e9:.0f} | {f_bwd / r['bwd_s'] / 1e9:.0f} | "
              f"{(f_fwd + f_bwd) / r['total_s'] / 1e9:.0f} | {speedup} | {r['peak_rss_gib']:.2f} |")


if __name__ == "__main__":
    main()
