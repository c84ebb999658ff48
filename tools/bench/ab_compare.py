#!/usr/bin/env python3
"""A/B timing of two or more opennsa-bench binaries on a noisy machine.

Runs the binaries in turn, one timed repetition each per round, for several rounds, so that a
slow stretch of a shared machine hits every binary alike; prints each binary's median and min.

    python3 tools/bench/ab_compare.py --rounds 8 --threads 2 --preset bwd-bf16-g16 -- old/opennsa-bench new/opennsa-bench

Everything before `--` except --rounds is passed to opennsa-bench (shape flags, --preset, ...).
"""
import json
import statistics
import subprocess
import sys


def main(argv):
    if "--" not in argv:
        print(__doc__)
        return 2
    split = argv.index("--")
    opts, binaries = argv[:split], argv[split + 1:]
    rounds = 6
    if "--rounds" in opts:
        at = opts.index("--rounds")
        rounds = int(opts[at + 1])
        del opts[at:at + 2]
    times = {b: [] for b in binaries}
    for _ in range(rounds):
        for b in binaries:
            out = subprocess.run([b, "--reps", "1", "--json", "--quiet"] + opts, capture_output=True, text=True,
                                 check=True).stdout
            rows = [json.loads(line) for line in out.splitlines() if line.startswith('{"name"')]
            times[b].append(rows[0]["seconds"])
    for b in binaries:
        t = times[b]
        print(f"{b}: median {statistics.median(t):.4f} s, min {min(t):.4f} s, runs " + " ".join(f"{x:.3f}" for x in t))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
