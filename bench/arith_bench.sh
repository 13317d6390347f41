#!/usr/bin/env bash
# Benchmark of the arithmetic subcommands on a Qwen2.5-1.5B-shaped bf16 model from
# `rvec testmodel`, page cache warm, against `cp` of the target's safetensors in the
# same run. Reports wall time, the ratio apply/cp and peak RSS (/usr/bin/time -v).
#   bench/arith_bench.sh [build/rvec]          (SHAPE=0.5b|1.5b|7b, BENCH_DIR=/tmp/...)
# Needs ~5x the model size of free disk under BENCH_DIR; everything is deleted at the end.
set -euo pipefail
RVEC=$(realpath "${1:-build/rvec}")
SHAPE=${SHAPE:-1.5b}
DIR=${BENCH_DIR:-/tmp/rvec-arith-bench-$$}
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian package 'time')" >&2; exit 1; }
rm -rf "$DIR"; mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT

# Runs a command under /usr/bin/time -v; prints "label seconds peak_rss_MB".
measure() {
  local label=$1; shift
  /usr/bin/time -v -o "$DIR/time.txt" "$@" >/dev/null 2>"$DIR/err.txt" || { cat "$DIR/err.txt" >&2; exit 1; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$DIR/time.txt")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$DIR/time.txt")
  echo "$label $wall $rss"
}
warm() { cat "$@" > /dev/null; }

echo "== setup: two $SHAPE-shaped bf16 models ($RVEC)" >&2
"$RVEC" testmodel --shape "$SHAPE" --dtype bf16 --no-tokenizer --seed 1 -q -o "$DIR/target"
"$RVEC" testmodel --like "$DIR/target" --perturb 0.001 --seed 2 -q -o "$DIR/tuned"
SIZE=$(du -b "$DIR"/target/*.safetensors | awk '{s+=$1} END {printf "%.0f", s}')
echo "model: $SHAPE, $(numfmt --to=si "$SIZE")B of bf16 safetensors; cpus: $(nproc); $(uptime | sed 's/.*load/load/')"

warm "$DIR"/target/*.safetensors "$DIR"/tuned/*.safetensors
read -r _ t_cp rss_cp < <(measure cp cp "$DIR"/target/*.safetensors "$DIR/cp.safetensors")
rm -f "$DIR/cp.safetensors"
warm "$DIR"/target/*.safetensors "$DIR"/tuned/*.safetensors
read -r _ t_ex16 rss_ex16 < <(measure extract-bf16 "$RVEC" extract --base "$DIR/target" --tuned "$DIR/tuned" --dtype bf16 --no-hash -q -o "$DIR/vec")
warm "$DIR"/target/*.safetensors "$DIR"/vec/*.safetensors
read -r _ t_ap rss_ap < <(measure apply "$RVEC" apply "$DIR/target" --vector "$DIR/vec" --no-hash -q -o "$DIR/out")
rm -rf "$DIR/out"
warm "$DIR"/target/*.safetensors "$DIR"/vec/*.safetensors
read -r _ t_aph rss_aph < <(measure apply+sha256 "$RVEC" apply "$DIR/target" --vector "$DIR/vec" -q -o "$DIR/out")
rm -rf "$DIR/out" "$DIR/vec"
warm "$DIR"/target/*.safetensors "$DIR"/tuned/*.safetensors
read -r _ t_ex rss_ex < <(measure extract-lossless "$RVEC" extract --base "$DIR/target" --tuned "$DIR/tuned" --no-hash -q -o "$DIR/vec")
VSIZE=$(du -b "$DIR"/vec/*.safetensors | awk '{s+=$1} END {printf "%.0f", s}')
rm -rf "$DIR/vec"

printf '%-34s %9s %9s %12s\n' operation "time (s)" "vs cp" "peak RSS MB"
row() { printf '%-34s %9.2f %9.2f %12s\n' "$1" "$2" "$(awk -v a="$2" -v b="$t_cp" 'BEGIN {print a / b}')" "$3"; }
row "cp target safetensors" "$t_cp" "$rss_cp"
row "apply (target + vec, bf16)" "$t_ap" "$rss_ap"
row "apply, with input sha256" "$t_aph" "$rss_aph"
row "extract --dtype bf16" "$t_ex16" "$rss_ex16"
row "extract (lossless, $(numfmt --to=si "$VSIZE")B)" "$t_ex" "$rss_ex"
