# Cross-compiles rvec for 64-bit ARM Linux on an x86-64 Debian host (the NEON kernels'
# CI stage, tools/cross_aarch64.sh): Debian's g++-aarch64-linux-gnu, the :arm64 -dev packages
# (multiarch), and qemu-user to run the tests (ctest uses CMAKE_CROSSCOMPILING_EMULATOR).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# Debian's multiarch layout: headers are shared in /usr/include, libraries and .pc files per arch.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
# The binaries run on the multiarch arm64 libraries in /usr/lib/aarch64-linux-gnu (libc6:arm64 and
# the others come with the :arm64 -dev packages). Not with `-L /usr/aarch64-linux-gnu`: mixing
# that cross libc with the multiarch libraries made pthread_create spin forever under qemu 7.2.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)
