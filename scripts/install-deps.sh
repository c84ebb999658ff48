#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test OpenNSA. Skips apt entirely
# when everything is already there (so it also works offline on a prepared machine).
set -euo pipefail

packages=(g++ cmake ninja-build pkgconf libgtest-dev libbenchmark-dev)

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
