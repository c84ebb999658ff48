# Cross build for aarch64 Linux with Debian's cross toolchain (g++-aarch64-linux-gnu) and its
# multiarch arm64 libraries (libgtest-dev:arm64 etc. in /usr/lib/aarch64-linux-gnu), no sysroot.
# ctest runs every test program under qemu-user:
#
#   cmake -S . -B build-aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
#   cmake --build build-aarch64 -j2
#   (cd build-aarch64 && ctest)                              # NEON-only CPU (cortex-a53, the default)
#   (cd build-aarch64 && OPENNSA_QEMU_CPU=max,sve512=on ctest)   # the same build, 512-bit SVE
#
# The CPU model: OPENNSA_QEMU_CPU in the environment when the tests run, else the cache variable
# OPENNSA_QEMU_CPU (default cortex-a53). QEMU is pointed at / for the loader and libc (-L /):
# the multiarch ones; a loader taken from elsewhere with Debian's libc hangs at the first
# pthread_create.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

set(OPENNSA_QEMU_CPU cortex-a53 CACHE STRING
    "QEMU CPU model the aarch64 tests run on (OPENNSA_QEMU_CPU in the environment overrides it)")
find_program(OPENNSA_QEMU_AARCH64 NAMES qemu-aarch64-static qemu-aarch64 REQUIRED)
# Through a shell script so the CPU model can change between ctest runs without a reconfigure.
set(CMAKE_CROSSCOMPILING_EMULATOR
    /bin/sh ${CMAKE_CURRENT_LIST_DIR}/qemu-aarch64-run.sh ${OPENNSA_QEMU_AARCH64} ${OPENNSA_QEMU_CPU})
