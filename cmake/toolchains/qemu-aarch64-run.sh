#!/bin/sh
# CMAKE_CROSSCOMPILING_EMULATOR of aarch64-linux-gnu.cmake: runs an aarch64 program under
# qemu-user. Arguments: the qemu binary, the default CPU model, then the program and its arguments.
# OPENNSA_QEMU_CPU in the environment replaces the default CPU model (e.g. max,sve512=on).
qemu=$1
cpu=${OPENNSA_QEMU_CPU:-$2}
shift 2
exec "$qemu" -L / -cpu "$cpu" "$@"
