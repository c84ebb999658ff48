#!/usr/bin/env python3
"""torch's 16-bit CPU linear against the same map computed in fp32 (cast input and weights,
round the result once): the measurement behind NativeSparseAttention's float32_projections.

[T, hidden] x [hidden, out] with bias, forward + backward (dx, dW, db), best of 3 runs each:

  python bench/bench_linear16.py [--T 4096] [--hidden 1024] [--out 1024] [--threads 1]

Prints whether torch reports fast 16-bit kernels (opennsa.nn.cpu_has_fast_matmul): where it does
not (AVX2 CPUs), the native bf16 / fp16 rows are torch's slow fallback.
"""

import argparse
import time

import torch
import torch.nn.functional as F

from opennsa.nn import cpu_has_fast_matmul


def best_times(dtype, via_fp32, t, hidden, out):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(t, hidden, generator=gen).to(dtype).requires_grad_(True)
    w = (torch.randn(out, hidden, generator=gen) * hidden ** -0.5).to(dtype).requires_grad_(True)
    b = torch.randn(out, generator=gen).to(dtype).requires_grad_(True)
    dy = torch.randn(t, out, generator=gen).to(dtype)
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        y = F.linear(x.float(), w.float(), b.float()).to(dtype) if via_fp32 else F.linear(x, w, b)
        t1 = time.perf_counter()
        y.backward(dy)
        runs.append((t1 - t0, time.perf_counter() - t1))
        x.grad = w.grad = b.grad = None
    return min(r[0] for r in runs), min(r[1] for r in runs)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--T", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--out", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); fast bf16: {cpu_has_fast_matmul(torch.bfloat16)}, "
          f"fast fp16: {cpu_has_fast_matmul(torch.float16)}")
    flop = 2 * args.T * args.hidden * args.out
    for dtype, via in ((torch.float32, False), (torch.bfloat16, False), (torch.bfloat16, True),
                       (torch.float16, False), (torch.float16, True)):
        fwd, bwd = best_times(dtype, via, args.T, args.hidden, args.out)
        name = f"{str(dtype).replace('torch.', '')} {'via fp32' if via else 'native'}"
        print(f"{name:18s} fwd {fwd * 1e3:8.1f} ms  bwd {bwd * 1e3:8.1f} ms  fwd+bwd {(fwd + bwd) * 1e3:8.1f} ms  "
              f"({3 * flop / (fwd + bwd) / 1e9:.1f} GFLOP/s)")


if __name__ == "__main__":
    main()
