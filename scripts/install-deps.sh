#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to build and test OpenNSA. Skips apt entirely
# when everything is already there (so it also works offline on a prepared machine).
#
#   bash scripts/install-deps.sh                     # gcc build: compiler, cmake, GoogleTest, ...
#   bash scripts/install-deps.sh --clang --aarch64   # also clang, and the aarch64 cross build
#
# --aarch64: Debian's cross g++, arm64 GoogleTest and Google Benchmark (multiarch, which needs
# `dpkg --add-architecture arm64`), and qemu-user-static to run the tests. Everything missing is
# installed after a single `apt-get update`.
set -euo pipefail

packages=(g++ cmake ninja-build pkgconf libgtest-dev libbenchmark-dev)
want_arm64=0
for arg in "$@"; do
  case "$arg" in
    --clang) packages+=(clang) ;;
    --aarch64) packages+=(g++-aarch64-linux-gnu qemu-user-static libgtest-dev:arm64 libbenchmark-dev:arm64)
               want_arm64=1 ;;
    *) echo "install-deps: unknown option '$arg' (expected --clang or --aarch64)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # The arm64 package lists only arrive with the update if the architecture is known to dpkg.
  if [ "$want_arm64" = 1 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $SUDO dpkg --add-architecture arm64
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
