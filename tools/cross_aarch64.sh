#!/usr/bin/env bash
# Builds rvec for 64-bit ARM Linux on an x86-64 Debian 12 host and runs the kernel tests (the
# NEON kernels, the bf16/f16 conversions, the engine against the fixture logits) under
# qemu-user. Installs the cross compiler, qemu-user and the :arm64 -dev packages (Debian
# multiarch) when missing. Builds every target into build-aarch64/ (RVEC_BUILD_DIR); extra
# arguments go to cmake. qemu checks results, not speed (it runs the vector code many times
# slower than a core, with other relative costs).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${RVEC_BUILD_DIR:-build-aarch64}
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
# Multiarch-installable -dev packages; libyaml-cpp-dev is not (its :arm64 and :amd64 packages
# conflict), so its arm64 headers and CMake files are unpacked into the build directory below.
PKGS=(g++-aarch64-linux-gnu qemu-user libfmt-dev:arm64 libpcre2-dev:arm64 libssl-dev:arm64 libicu-dev:arm64
      libgtest-dev:arm64 libgmock-dev:arm64 libcurl4-openssl-dev:arm64 libcpp-httplib-dev:arm64
      liblapacke-dev:arm64 libopenblas-dev:arm64 libbenchmark-dev:arm64 libyaml-cpp0.7:arm64 libc6:arm64
      libstdc++6:arm64 libgomp1:arm64)
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -qq
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  # --no-remove: never trade a host package for an arm64 one.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends --no-remove "${missing[@]}" >&2
fi
mkdir -p "$BUILD_DIR"
SYSROOT=$(cd "$BUILD_DIR" && pwd)/arm64-yaml-cpp
if [ ! -f "$SYSROOT/usr/lib/aarch64-linux-gnu/cmake/yaml-cpp/yaml-cpp-config.cmake" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download libyaml-cpp-dev:arm64 2>/dev/null >&2)
  dpkg -x "$tmp"/libyaml-cpp-dev_*_arm64.deb "$SYSROOT"
  rm -rf "$tmp"
  # The package's CMake files name the shared library next to them; it is installed in /usr.
  so=$(basename /usr/lib/aarch64-linux-gnu/libyaml-cpp.so.0.*.*)
  ln -sf "/usr/lib/aarch64-linux-gnu/$so" "$SYSROOT/usr/lib/aarch64-linux-gnu/$so"
fi
LAUNCHER=()
command -v ccache >/dev/null && LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# -Wno-restrict: GCC 12 reports a false -Wrestrict inside libstdc++'s string code at -O3 on
# aarch64 (GCC bug 105329), which -Werror would turn into an error.
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
  -DCMAKE_CXX_FLAGS=-Wno-restrict -Dyaml-cpp_DIR="$SYSROOT/usr/lib/aarch64-linux-gnu/cmake/yaml-cpp" \
  "${LAUNCHER[@]}" "$@" >/dev/null
# Every target that tools/build.sh builds on an ARM machine (the program, all tests, benchmarks).
cmake --build "$BUILD_DIR"
run() { qemu-aarch64 "$@"; }  # see cmake/aarch64-linux-gnu.cmake
# qemu's default CPU model ("max") has the BF16 extension, so --bf16-dot runs BFDOT here.
expect_cpu() {  # expect_cpu LINE [ENV...]: `rvec version`'s cpu line
  local want=$1 got
  shift
  got=$(env "$@" qemu-aarch64 "$BUILD_DIR/rvec" version | grep '^cpu:')
  [ "$got" = "$want" ] || { echo "aarch64: $* rvec version printed '$got', not '$want'" >&2; exit 1; }
}
expect_cpu "cpu: neon +bf16"
expect_cpu "cpu: neon" RVEC_ISA=neon-nobf16
expect_cpu "cpu: neon" QEMU_CPU=neoverse-n1  # Graviton2's core: no BF16
# --bf16-dot on a bf16 model, batches of 8: BFDOT where the CPU has BF16; on one without, the
# exact kernels (a BFDOT there would be SIGILL, and the run would print no JSON).
FIX=${RVEC_SHARED_DIR:-../shared}/fixtures/qwen2_tiny_bf16_gqa8x2/model
if [ -d "$FIX" ]; then
  expect_matmul() {  # expect_matmul KIND [ENV...]
    local want=$1 out
    shift
    out=$(env "$@" qemu-aarch64 "$BUILD_DIR/rvec" bench "$FIX" --batch 8 --prompt-tokens 16 --gen-tokens 4 \
      --no-bandwidth --json --bf16-dot 2>&1) && grep -q "\"matmul\":\"$want\"" <<<"$out" ||
      { echo "aarch64: $* rvec bench --bf16-dot did not run with matmul $want: $out" >&2; exit 1; }
  }
  expect_matmul bf16dot
  expect_matmul f32 QEMU_CPU=neoverse-n1
fi
# The suites that exercise the NEON code; the others do not depend on the ISA (and some, such
# as the FIFO and dead-process tests, hang under qemu-user's syscall emulation).
run "$BUILD_DIR/tests/rvec_tests_core" --gtest_filter='DType.*:Cpu.*' --gtest_brief=1
run "$BUILD_DIR/tests/rvec_tests_arith" --gtest_filter='ArithKernels.*' --gtest_brief=1
run "$BUILD_DIR/tests/rvec_tests_infer" --gtest_brief=1
echo "aarch64: all passed"
