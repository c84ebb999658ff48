"""A small language model built from opennsa.nn.NativeSparseAttention learns long-range associative
recall, which the same model with only the sliding-window branch cannot.

Each training sequence is generated on the fly: `pairs` memory tokens, each carrying a key and its
value, scattered over the first part of the sequence among filler ("noise") tokens, then `queries` query
tokens at the end, each naming one of the stored keys. The model must output the value stored
with the queried key. Every memory token lies more than `window` tokens before every query, so a
sliding window never sees it: only the compressed and selected branches can fetch it (the
compressed attention ranks the blocks, the selected attention reads the winning block's tokens).
The batch is one [T, hidden] tensor of `batch` sequences with cumulative lengths (varlen).

    python examples/python/nsa_recall.py                      # full run (minutes on 2 cores)
    python examples/python/nsa_recall.py --steps 3 --smoke    # seconds (what pytest runs)

Prints one progress line per `--log-every` steps and writes a PNG of loss and accuracy per model
(needs matplotlib; --plot '' skips it) and the curves as JSON. After training, each model answers
fresh sequences from its paged KV caches (layer.prefill on the context, then one layer.step per
query token) and the answers are checked against forward() on the whole sequences.
"""

import argparse
import json
import math
import time

import torch
from torch import nn

import opennsa
from opennsa.nn import NativeSparseAttention


class RecallTask:
    """Token = (a, b): a is a key (< keys), a noise symbol or nothing; b a value (< values), the
    query marker or nothing. Memory tokens carry (key, value), queries (key, QUERY)."""

    def __init__(self, keys, values, noise, seq_len, pairs, queries, window):
        self.keys, self.values, self.noise = keys, values, noise
        self.seq_len, self.pairs, self.queries, self.window = seq_len, pairs, queries, window
        self.a_vocab = keys + noise
        self.b_vocab = values + 2  # values, QUERY, NONE
        self.query_marker, self.none = values, values + 1
        self.memory_end = seq_len - queries - window  # memory tokens lie before this position
        if self.memory_end < pairs:
            raise ValueError("seq_len too short for the pairs, queries and window")

    def batch(self, count, gen):
        """(a [count*S], b [count*S], targets [count*S] with -100 where nothing is asked)."""
        s = self.seq_len
        a = self.keys + torch.randint(0, self.noise, (count, s), generator=gen)
        b = torch.full((count, s), self.none)
        targets = torch.full((count, s), -100)
        for row in range(count):
            keys = torch.randperm(self.keys, generator=gen)[:self.pairs]
            values = torch.randint(0, self.values, (self.pairs,), generator=gen)
            where = torch.randperm(self.memory_end, generator=gen)[:self.pairs]
            a[row, where], b[row, where] = keys, values
            asked = torch.randint(0, self.pairs, (self.queries,), generator=gen)
            a[row, s - self.queries:] = keys[asked]
            b[row, s - self.queries:] = self.query_marker
            targets[row, s - self.queries:] = values[asked]
        return a.flatten(), b.flatten(), targets.flatten()


class RecallModel(nn.Module):
    """Pre-norm transformer on [T, hidden] rows: NSA attention + MLP blocks, a value classifier."""

    def __init__(self, task, hidden, layers, attention):
        super().__init__()
        self.embed_a = nn.Embedding(task.a_vocab, hidden)
        self.embed_b = nn.Embedding(task.b_vocab, hidden)
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            self.blocks.append(nn.ModuleDict(dict(
                norm1=nn.LayerNorm(hidden), attn=NativeSparseAttention(hidden, **attention), norm2=nn.LayerNorm(hidden),
                mlp=nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden)))))
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, task.values)

    def forward(self, a, b, cu_seqlens):
        h = self.embed_a(a) + self.embed_b(b)
        for blk in self.blocks:
            h = h + blk["attn"](blk["norm1"](h), cu_seqlens=cu_seqlens)
            h = h + blk["mlp"](blk["norm2"](h))
        return self.head(self.norm(h))

    def new_caches(self, sequences, max_len):
        """One PagedKVCache per layer."""
        return [blk["attn"].new_cache(sequences, max_len) for blk in self.blocks]

    @torch.no_grad()
    def decode(self, a, b, caches, cu_seqlens=None):
        """With cu_seqlens: the prefill of the caches' sequences (rows as in forward). Without: one
        decoding step, a and b [sequences] holding each sequence's next token."""
        h = self.embed_a(a) + self.embed_b(b)
        for blk, cache in zip(self.blocks, caches):
            x = blk["norm1"](h)
            h = h + (blk["attn"].step(x, cache) if cu_seqlens is None else blk["attn"].prefill(x, cache, cu_seqlens))
            h = h + blk["mlp"](blk["norm2"](h))
        return self.head(self.norm(h))


def train(name, branches, args, task):
    torch.manual_seed(args.seed)
    attention = dict(num_heads=args.heads, num_kv_heads=args.kv_heads, head_dim=args.head_dim,
                     compress_block_size=args.l, compress_stride=args.d, select_block_size=args.sel,
                     select_block_count=args.k, window_size=args.window, branches=branches)
    model = RecallModel(task, args.hidden, args.layers, attention)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps))))
    gen = torch.Generator().manual_seed(args.seed + 1)
    cu = [task.seq_len * (i + 1) for i in range(args.batch)]
    curve = {"step": [], "loss": [], "accuracy": [], "seconds": []}
    start, loss_acc, hit_acc, seen = time.time(), 0.0, 0, 0
    for step in range(1, args.steps + 1):
        a, b, targets = task.batch(args.batch, gen)
        logits = model(a, b, cu)
        asked = targets >= 0
        loss = nn.functional.cross_entropy(logits[asked], targets[asked])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_acc += loss.item() * int(asked.sum())
        hit_acc += int((logits[asked].argmax(-1) == targets[asked]).sum())
        seen += int(asked.sum())
        if step % args.log_every == 0 or step == args.steps:
            elapsed = time.time() - start
            curve["step"].append(step)
            curve["loss"].append(loss_acc / seen)
            curve["accuracy"].append(hit_acc / seen)
            curve["seconds"].append(elapsed)
            print(f"[{name}] step {step:5d}/{args.steps}  loss {loss_acc / seen:.4f}  accuracy {hit_acc / seen:.3f}  "
                  f"({elapsed:.0f} s)", flush=True)
            loss_acc, hit_acc, seen = 0.0, 0, 0
    return model, curve


@torch.no_grad()
def evaluate(model, task, args):
    gen = torch.Generator().manual_seed(args.seed + 12345)
    count = 8 * args.batch  # fresh sequences, never trained on
    a, b, targets = task.batch(count, gen)
    logits = model(a, b, [task.seq_len * (i + 1) for i in range(count)])
    asked = targets >= 0
    return float((logits[asked].argmax(-1) == targets[asked]).float().mean())


@torch.no_grad()
def generate(model, task, args):
    """Answers fresh sequences' queries from the paged caches: the prefill holds everything before
    the queries, then one decoding step per query token. Returns (accuracy, how many answers equal
    forward's on the whole sequences, answers, milliseconds per step)."""
    gen = torch.Generator().manual_seed(args.seed + 999)
    count, s, prefix = args.batch, task.seq_len, task.seq_len - task.queries
    a, b, targets = task.batch(count, gen)
    a, b, targets = a.view(count, s), b.view(count, s), targets.view(count, s)
    forward_answers = model(a.flatten(), b.flatten(), [s * (i + 1) for i in range(count)]).argmax(-1).view(count, s)
    caches = model.new_caches(count, s)
    model.decode(a[:, :prefix].flatten(), b[:, :prefix].flatten(), caches, [prefix * (i + 1) for i in range(count)])
    hits = same = 0
    start = time.perf_counter()
    for position in range(prefix, s):
        answer = model.decode(a[:, position], b[:, position], caches).argmax(-1)
        hits += int((answer == targets[:, position]).sum())
        same += int((answer == forward_answers[:, position]).sum())
    step_ms = (time.perf_counter() - start) * 1e3 / task.queries
    return hits / (count * task.queries), same, count * task.queries, step_ms


def plot(curves, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, c in curves.items():
        ax_loss.plot(c["step"], c["loss"], label=name)
        ax_acc.plot(c["step"], c["accuracy"], label=name)
    ax_loss.set(xlabel="step", ylabel="cross-entropy (answer tokens)", title="training loss")
    ax_acc.set(xlabel="step", ylabel="accuracy", title="recall accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=1400)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--queries", type=int, default=16)
    p.add_argument("--keys", type=int, default=16)
    p.add_argument("--values", type=int, default=16)
    p.add_argument("--noise", type=int, default=1)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=1)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--l", type=int, default=8)
    p.add_argument("--d", type=int, default=4)
    p.add_argument("--sel", type=int, default=8)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="OpenNSA's threads")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch's intra-op threads: at this model size 1 is much faster, as torch's OpenMP "
                        "workers spin between their small ops and take the cores from OpenNSA's pool")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--models", default="nsa,window-only")
    p.add_argument("--plot", default="nsa_recall.png", help="PNG path ('' = none)")
    p.add_argument("--json", default="", help="write the curves and final accuracies here")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    args = p.parse_args(argv)
    if args.smoke:
        args.batch, args.seq_len, args.pairs, args.queries, args.hidden, args.log_every = 2, 96, 2, 4, 16, 1
        args.window, args.keys = 8, 8
    torch.set_num_threads(args.torch_threads)
    opennsa.set_num_threads(args.threads)
    task = RecallTask(args.keys, args.values, args.noise, args.seq_len, args.pairs, args.queries, args.window)
    branch_sets = {"nsa": ("compressed", "selected", "window"), "window-only": ("window",)}
    curves, results, decoded, start = {}, {}, {}, time.time()
    for name in args.models.split(","):
        model, curves[name] = train(name, branch_sets[name], args, task)
        results[name] = evaluate(model, task, args)
        print(f"[{name}] held-out accuracy {results[name]:.3f} on {8 * args.batch * args.queries} queries (chance "
              f"{1 / args.values:.3f})", flush=True)
        accuracy, same, asked, step_ms = generate(model, task, args)
        decoded[name] = dict(accuracy=accuracy, same_as_forward=same, queries=asked, step_ms=step_ms)
        print(f"[{name}] decoding from the cache: {asked} queries of {args.batch} sequences answered one step at a "
              f"time after a prefill: accuracy {accuracy:.3f}, {same}/{asked} answers as forward's, "
              f"{step_ms:.1f} ms per step", flush=True)
    wall = time.time() - start
    print(f"total {wall:.0f} s; " + ", ".join(f"{n}: {a:.3f}" for n, a in results.items()), flush=True)
    title = (f"associative recall, {args.seq_len}-token sequences, memory > {args.window} tokens (the window) "
             f"before the queries; {args.steps} steps of {args.batch} sequences")
    if args.plot:
        plot(curves, args.plot, title)
        print(f"wrote {args.plot}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "curves": curves, "held_out_accuracy": results, "decoding": decoded,
                       "wall_s": wall}, f)
    return results, decoded


if __name__ == "__main__":
    main()
