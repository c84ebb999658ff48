#!/usr/bin/env python3
"""Forward + backward time of opennsa.nn.NativeSparseAttention against

  reference  the same layer in plain PyTorch (tests/python/nsa_layer_reference.py: gathers, masks,
             softmax, autograd), in the layer's dtype
  dense      the same projections with dense causal attention instead of the three branches:
             torch.nn.functional.scaled_dot_product_attention(is_causal=True, enable_gqa=True)
  dense32    dense with SDPA computed in fp32 (q, k, v cast, the output cast back): for 16-bit
             inputs on CPUs where torch's 16-bit SDPA is slow (AVX2: about 6x fp32's time)
  projections  only the projections and gates (no attention): the cost all three share
  compressed, selected, window  the layer with that branch alone (branches=(...,)): minus the
             projections' time, the branch's own cost

hidden 1024, Dk = Dv = 64, l = 32, d = 16, l' = 64, k = 16, w = 512 (the paper's values), one
sequence of T tokens, loss = sum(y * dy). Each configuration runs in its own subprocess (peak RSS
= its ru_maxrss); the streaming copy bandwidth of the machine is measured at the start of the run.

  python bench/bench_layer.py [--T 4096,16384] [--heads 16/1,64/4] [--dtype bf16,fp32]
                              [--impl opennsa,reference,dense,dense32,projections,compressed,selected,window]
                              [--reps 3] [--rounds 1] [--window-block 16,64]
                              [--peak-bench build/tools/bench/opennsa-bench] [--json out.jsonl]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BRANCHES = ("compressed", "selected", "window")


def reference_estimate_gib(cfg):
    """Peak memory of the plain layer, dominated by the selected branch's gathered K/V blocks and
    their gradients, its score/probability tensors, and the window branch's gathered K/V."""
    elem = 2 if cfg["dtype"] == "bf16" else 4
    t, n1, n2, d = cfg["T"], cfg["N1"], cfg["N2"], 64
    keys_sel, keys_win = 16 * 64, 512
    gathered = t * n2 * (keys_sel + keys_win) * 2 * d * 3      # K and V, forward + grad + index temporaries
    scores = t * n1 * (keys_sel + keys_win) * 4                # scores, probs, masks, grads
    return (gathered + scores) * elem / 2 ** 30


def run_worker(cfg):
    import torch
    import opennsa
    from opennsa.nn import NativeSparseAttention
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "python"))
    from nsa_layer_reference import nsa_layer

    torch.set_num_threads(cfg["torch_threads"])
    if cfg.get("window_block"):  # an A/B of the window's block size b (it must divide w)
        import opennsa._sliding_window as sliding
        sliding.window_block_size = lambda window_size: cfg["window_block"]
    opennsa.set_num_threads(cfg["threads"])
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[cfg["dtype"]]
    torch.manual_seed(0)
    branch_only = cfg["impl"] in BRANCHES  # the layer with that branch alone
    layer = NativeSparseAttention(1024, cfg["N1"], cfg["N2"], head_dim=64, compress_block_size=32, compress_stride=16,
                                  select_block_size=64, select_block_count=16, window_size=512,
                                  branches=(cfg["impl"],) if branch_only else BRANCHES).to(dtype)
    x = torch.randn(cfg["T"], 1024, dtype=dtype)
    dy = torch.randn(cfg["T"], 1024, dtype=dtype)
    seq = [cfg["T"]]

    def dense(layer, x, attention_dtype=None):
        q, k, v, _ = layer.project(x)
        cast = (lambda t: t.to(attention_dtype)) if attention_dtype else (lambda t: t)
        o = torch.nn.functional.scaled_dot_product_attention(
            cast(q.transpose(0, 1)), cast(k.transpose(0, 1)), cast(v.transpose(0, 1)), is_causal=True,
            scale=layer.scale, enable_gqa=True).to(x.dtype)
        return layer.linear(layer.o_proj, o.transpose(0, 1).reshape(x.shape[0], -1))

    def projections(layer, x):  # the layers' shared cost: projections and gates, no attention
        q, k, v, g = layer.project(x)
        dv = layer.value_head_dim
        o = g[..., :1] * (q[..., :dv] + k[..., :dv].mean(1, keepdim=True) + v.mean(1, keepdim=True))
        return layer.linear(layer.o_proj, o.reshape(x.shape[0], -1))

    forward = {"opennsa": lambda x: layer(x, cu_seqlens=seq), "reference": lambda x: nsa_layer(layer, x, seq),
               "dense": lambda x: dense(layer, x), "dense32": lambda x: dense(layer, x, torch.float32),
               "projections": lambda x: projections(layer, x)}
    forward = forward["opennsa" if branch_only else cfg["impl"]]
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    deadline = time.time() + cfg["budget_s"]
    for rep in range(cfg["reps"] + 1):  # the first run warms up
        xx = x.detach().requires_grad_(True)
        layer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        y = forward(xx)
        t1 = time.perf_counter()
        y.backward(dy)
        t2 = time.perf_counter()
        del y
        times.append((t1 - t0, t2 - t1))
        if time.time() > deadline:
            break
    runs = times[1:] or times  # a single (cold) run when the first one ate the budget
    fwd = statistics.median(r[0] for r in runs)
    bwd = statistics.median(r[1] for r in runs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(cfg, fwd_ms=fwd * 1e3, bwd_ms=bwd * 1e3, total_ms=(fwd + bwd) * 1e3, runs=len(runs),
                peak_rss_gib=peak / 2 ** 20, base_rss_gib=base_rss / 2 ** 20)


def copy_bandwidth_gbs(threads):
    """Streaming copy of 512 MiB (read + write counted), best of 5: the machine's state this run."""
    import torch
    torch.set_num_threads(threads)
    src = torch.ones(2 ** 27)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.numel() * 4 / best / 1e9


def fma_peak(bench):
    """The fp32 FMA peak (GFLOP/s, 1 and all threads) from opennsa-bench --peak, measured now."""
    if not bench:
        return ""
    out = subprocess.run([bench, "--peak", "--json", "--quiet"], capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith('{"peak"')]
    return "; ".join(", ".join(f"{k} {v}" for k, v in r.items()) for r in rows)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--worker")
    p.add_argument("--T", default="4096,16384")
    p.add_argument("--heads", default="16/1,64/4")
    p.add_argument("--dtype", default="bf16,fp32")
    p.add_argument("--impl", default="opennsa,reference,dense")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=1, help="run every configuration this many times, interleaved "
                   "(a slow stretch of a shared machine hits all alike); the table shows medians")
    p.add_argument("--window-block", default="", help="comma list of window block sizes b to compare (each must "
                   "divide w = 512; default: the library's choice)")
    p.add_argument("--peak-bench", default="", help="opennsa-bench binary: its --peak is measured before and after")
    p.add_argument("--threads", type=int, default=2, help="OpenNSA's threads")
    p.add_argument("--torch-threads", type=int, default=2, help="torch's intra-op threads (projections, SDPA, "
                   "the reference)")
    p.add_argument("--budget-s", type=float, default=90.0, help="stop repeating a configuration after this")
    p.add_argument("--max-reference-gib", type=float, default=12.0, help="skip reference runs estimated above")
    p.add_argument("--json", default="")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(run_worker(json.loads(args.worker))))
        return
    print(f"copy bandwidth: {copy_bandwidth_gbs(args.threads):.1f} GB/s ({args.threads} threads)", flush=True)
    if args.peak_bench:
        print(f"fp32 FMA peak (before): {fma_peak(args.peak_bench)}", flush=True)
    blocks = [int(b) for b in args.window_block.split(",")] if args.window_block else [0]
    configs = []
    for t in map(int, args.T.split(",")):
        for heads in args.heads.split(","):
            n1, n2 = map(int, heads.split("/"))
            for dtype in args.dtype.split(","):
                for impl in args.impl.split(","):
                    for wb in blocks if impl in ("opennsa", "window") else [0]:
                        configs.append(dict(T=t, N1=n1, N2=n2, dtype=dtype, impl=impl, reps=args.reps,
                                            threads=args.threads, torch_threads=args.torch_threads,
                                            budget_s=args.budget_s, window_block=wb))
    runs = {}
    for _ in range(args.rounds):
        for cfg in configs:
            name = cfg["impl"] + (f" b={cfg['window_block']}" if cfg["window_block"] else "")
            heads = f"{cfg['N1']}/{cfg['N2']}"
            if cfg["impl"] == "reference" and reference_estimate_gib(cfg) > args.max_reference_gib:
                res = dict(cfg, skipped=f"needs about {reference_estimate_gib(cfg):.0f} GiB")
            else:
                env = dict(os.environ, OPENNSA_NUM_THREADS=str(args.threads))
                proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(cfg)],
                                      capture_output=True, text=True, env=env)
                if proc.returncode != 0:
                    res = dict(cfg, skipped=f"failed: {proc.stderr.strip().splitlines()[-1:]}")
                else:
                    res = json.loads(proc.stdout.strip().splitlines()[-1])
            runs.setdefault(json.dumps(cfg), []).append(res)
            if "skipped" in res:
                print(f"T={cfg['T']} heads={heads} {cfg['dtype']} {name}: skipped ({res['skipped']})", flush=True)
            else:
                print(f"T={cfg['T']} heads={heads} {cfg['dtype']} {name}: fwd {res['fwd_ms']:.0f} ms, bwd "
                      f"{res['bwd_ms']:.0f} ms, fwd+bwd {res['total_ms']:.0f} ms ({res['runs']} runs), peak RSS "
                      f"{res['peak_rss_gib']:.2f} GiB", flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(res) + "\n")
    if args.peak_bench:
        print(f"fp32 FMA peak (after): {fma_peak(args.peak_bench)}", flush=True)
    results = []
    for key, rs in runs.items():
        done = [r for r in rs if "skipped" not in r]
        if not done:
            results.append(rs[0])
            continue
        med = {f: statistics.median(r[f] for r in done) for f in ("fwd_ms", "bwd_ms", "total_ms")}
        results.append(dict(json.loads(key), **med, rounds=len(done)))
    print(f"\nmedians over {args.rounds} interleaved round(s), fwd+bwd ms:")
    for r in results:
        name = r["impl"] + (f" b={r['window_block']}" if r["window_block"] else "")
        cell = "skipped" if "skipped" in r else f"{r['total_ms']:.0f} (fwd {r['fwd_ms']:.0f}, bwd {r['bwd_ms']:.0f})"
        print(f"  T={r['T']} {r['N1']}/{r['N2']} {r['dtype']} {name}: {cell}")
    print("\n| T | heads | dtype | opennsa fwd+bwd ms | reference ms | dense SDPA ms | dense, fp32 SDPA ms | "
          "vs reference | vs dense | vs dense, fp32 SDPA |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    keyed = {(r["T"], r["N1"], r["N2"], r["dtype"], r["impl"], r["window_block"]): r for r in results}
    for (t, n1, n2, dtype, impl, wb), r in keyed.items():
        if impl != "opennsa" or "skipped" in r:
            continue
        ref, den, den32 = (keyed.get((t, n1, n2, dtype, name, 0)) for name in ("reference", "dense", "dense32"))
        cell = lambda o: "–" if o is None or "skipped" in o else f"{o['total_ms']:.0f}"
        ratio = lambda o: "–" if o is None or "skipped" in o else f"{o['total_ms'] / r['total_ms']:.1f}x"
        label = dtype + (f" b={wb}" if wb else "")
        print(f"| {t} | {n1}/{n2} | {label} | {r['total_ms']:.0f} | {cell(ref)} | {cell(den)} | {cell(den32)} | "
              f"{ratio(ref)} | {ratio(den)} | {ratio(den32)} |")


if __name__ == "__main__":
    main()
