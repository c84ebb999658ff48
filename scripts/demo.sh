#!/usr/bin/env bash
# The main job: builds OpenNSA (Release) and runs one NSA training step (forward + backward)
# through the CANN-compatible C API on realistic sizes, checked against float64 on sampled rows and
# key blocks, printing throughput. Extra arguments go to examples/nsa_train_step.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target nsa_train_step
./build/examples/nsa_train_step "$@"
