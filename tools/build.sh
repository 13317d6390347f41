#!/usr/bin/env bash
# Installs rvec's build dependencies (Debian 12 packages) when missing, then
# configures and builds into build/ (Release). Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
PKGS=(build-essential cmake ninja-build pkg-config git
      nlohmann-json3-dev libcli11-dev libfmt-dev libpcre2-dev libyaml-cpp-dev libssl-dev
      libicu-dev libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev
      bubblewrap python3 python3-numpy time
      libcurl4-openssl-dev libcpp-httplib-dev liblapacke-dev libopenblas-dev ccache)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
BUILD_DIR=${RVEC_BUILD_DIR:-build}
# ccache (when installed) makes rebuilds in other worktrees and CI's second configuration cheap.
LAUNCHER=()
command -v ccache >/dev/null && LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "${LAUNCHER[@]}" "$@" >/dev/null
# The OpenAI Node SDK for the serve_openai_node test (pinned by tests/serve/js/package-lock.json).
if command -v npm >/dev/null && [ ! -d tests/serve/js/node_modules ]; then
  (cd tests/serve/js && npm ci --no-audit --no-fund --loglevel=error) || echo "npm ci failed: serve_openai_node will be skipped" >&2
fi
# RVEC_BUILD_TARGETS="a b" builds only those targets (CI uses it for the fuzz targets).
cmake --build "$BUILD_DIR" ${RVEC_BUILD_TARGETS:+--target $RVEC_BUILD_TARGETS}
