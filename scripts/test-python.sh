#!/usr/bin/env bash
# Builds the PyTorch extension and runs the Python test suite (tests/python/).
#
#   bash scripts/test-python.sh
#
# A virtual environment at .venv gets torch (pinned: OPENNSA_TORCH_VERSION, default 2.15.0, from
# PyPI; pip's cache makes reruns quick), numpy, pytest and scikit-build-core; then
# `pip install --no-build-isolation .` builds the extension against that torch (build folder
# build-python/, kept between runs) and pytest runs. Exits non-zero when anything fails,
# including when pytest collects no test.
set -euo pipefail
cd "$(dirname "$0")/.."

torch_version=${OPENNSA_TORCH_VERSION:-2.15.0}
venv=.venv

if [ ! -x "$venv/bin/python" ]; then
  echo "=== creating $venv"
  if ! python3 -m venv "$venv"; then
    rm -rf "$venv"
    echo "=== python3 -m venv failed: installing python3-venv"
    apt-get install -y python3-venv >/dev/null || { apt-get update >/dev/null && apt-get install -y python3-venv >/dev/null; }
    python3 -m venv "$venv"
  fi
fi
py="$venv/bin/python"

# Installs only what is missing, so that a rerun does not touch the network.
have_torch=$("$py" -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null || true)
if [ "$have_torch" != "$torch_version" ]; then
  echo "=== installing torch==$torch_version (have: ${have_torch:-none})"
  "$py" -m pip install "torch==$torch_version"
fi
missing=()
for mod in numpy pytest scikit_build_core; do
  "$py" -c "import $mod" 2>/dev/null || missing+=("${mod//_/-}")
done
# scikit-build-core needs CMake >= 3.20 and Ninja; the system ones serve when recent enough.
cmake_ok=$(cmake --version 2>/dev/null | awk 'NR==1 { split($3, v, "."); print (v[1] > 3 || (v[1] == 3 && v[2] >= 20)) ? 1 : 0 }')
[ "${cmake_ok:-0}" = 1 ] || missing+=(cmake)
command -v ninja >/dev/null || missing+=(ninja)
if [ ${#missing[@]} -gt 0 ]; then
  echo "=== installing ${missing[*]}"
  "$py" -m pip install "${missing[@]}"
fi

echo "=== building and installing the opennsa Python package"
"$py" -m pip install --no-build-isolation --no-deps .

echo "=== pytest tests/python"
status=0
"$py" -m pytest tests/python -q || status=$?
if [ "$status" -ne 0 ]; then
  [ "$status" -eq 5 ] && echo "=== pytest collected no test"
  echo "=== Python tests FAILED (pytest exit $status)"
  exit 1
fi
echo "=== Python tests passed"
