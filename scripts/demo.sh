#!/usr/bin/env bash
# The main job: builds OpenNSA (Release) and runs forward + backward on an NSA-shaped problem,
# checked against the float64 reference, printing throughput. Extra arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target opennsa-demo
./build/tools/opennsa-demo "$@"
