#!/usr/bin/env bash
# Benchmark of the arithmetic subcommands on a Qwen2.5-1.5B-shaped bf16 model from
# `rvec testmodel`, page cache warm, against `cp` of the target's safetensors in the
# same run. Reports wall time, the ratio to cp and peak RSS (/usr/bin/time -v).
#   bench/arith_bench.sh [build/rvec]     (SHAPE=0.5b|1.5b|7b, REPS=3, BENCH_DIR=/tmp/...)
# Each repetition times cp right before the rvec commands and divides by that cp, so a
# machine shared with other jobs gives comparable ratios; the table shows the median time
# and the median ratio over the repetitions (each row lists every ratio too), and the
# largest peak RSS. Needs ~5x the model size of free disk under BENCH_DIR (and as much
# free memory for "page cache warm" to hold); everything is deleted at the end.
set -euo pipefail
RVEC=$(realpath "${1:-build/rvec}")
SHAPE=${SHAPE:-1.5b}
REPS=${REPS:-3}
DIR=${BENCH_DIR:-/tmp/rvec-arith-bench-$$}
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (Debian package 'time')" >&2; exit 1; }
rm -rf "$DIR"; mkdir -p "$DIR"
trap 'rm -rf "$DIR"' EXIT

# Runs a command under /usr/bin/time -v; prints "seconds peak_rss_MB".
measure() {
  /usr/bin/time -v -o "$DIR/time.txt" "$@" >/dev/null 2>"$DIR/err.txt" || { cat "$DIR/err.txt" >&2; exit 1; }
  awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; w=s}
              /Maximum resident set size/ {r=$2/1024}
              END {printf "%s %.0f\n", w, r}' "$DIR/time.txt"
}
warm() { cat "$@" > /dev/null; }

echo "== setup: two $SHAPE-shaped bf16 models ($RVEC)" >&2
"$RVEC" testmodel --shape "$SHAPE" --dtype bf16 --no-tokenizer --seed 1 -q -o "$DIR/target"
"$RVEC" testmodel --like "$DIR/target" --perturb 0.001 --seed 2 -q -o "$DIR/tuned"
"$RVEC" extract --base "$DIR/target" --tuned "$DIR/tuned" --dtype bf16 --no-hash -q -o "$DIR/vec"
SIZE=$(du -b "$DIR"/target/*.safetensors | awk '{s+=$1} END {printf "%.0f", s}')
T=("$DIR"/target/*.safetensors) U=("$DIR"/tuned/*.safetensors) V=("$DIR"/vec/*.safetensors)

# apply+sha256 hashes every input (hash cache off); apply+sha256-cached finds the inputs'
# hashes in rvec's hash cache (a scratch one, filled by an untimed apply first), as every
# apply after the first on the same files does.
RVEC_CACHE_DIR="$DIR/hash-cache" "$RVEC" apply "$DIR/target" --vector "$DIR/vec" -q -o "$DIR/out" && rm -rf "$DIR/out"
ops=(apply apply+sha256 apply+sha256-cached extract-bf16 extract-lossless)
declare -A times ratios rss
run_op() {  # op -> time and RSS of one run (outputs deleted)
  case $1 in
    apply) warm "${T[@]}" "${V[@]}"; measure "$RVEC" apply "$DIR/target" --vector "$DIR/vec" --no-hash -q -o "$DIR/out" ;;
    apply+sha256) warm "${T[@]}" "${V[@]}"; RVEC_HASH_CACHE=0 measure "$RVEC" apply "$DIR/target" --vector "$DIR/vec" -q -o "$DIR/out" ;;
    apply+sha256-cached) warm "${T[@]}" "${V[@]}"; RVEC_CACHE_DIR="$DIR/hash-cache" measure "$RVEC" apply "$DIR/target" --vector "$DIR/vec" -q -o "$DIR/out" ;;
    extract-bf16) warm "${T[@]}" "${U[@]}"; measure "$RVEC" extract --base "$DIR/target" --tuned "$DIR/tuned" --dtype bf16 --no-hash -q -o "$DIR/out" ;;
    extract-lossless) warm "${T[@]}" "${U[@]}"; measure "$RVEC" extract --base "$DIR/target" --tuned "$DIR/tuned" --no-hash -q -o "$DIR/out"
                      du -b "$DIR"/out/*.safetensors | awk '{s+=$1} END {printf "%.0f", s}' > "$DIR/vsize" ;;
  esac
  rm -rf "$DIR/out"
}
for r in $(seq "$REPS"); do
  echo "== repetition $r/$REPS; $(uptime | sed 's/.*load/load/')" >&2
  for op in "${ops[@]}"; do
    warm "${T[@]}"
    read -r t_cp rss_cp < <(measure cp "${T[@]}" "$DIR/cp.safetensors")
    rm -f "$DIR/cp.safetensors"
    read -r t r_mb < <(run_op "$op")
    times[cp]+="$t_cp "; rss[cp]=$rss_cp
    times[$op]+="$t "; ratios[$op]+="$(awk -v a="$t" -v b="$t_cp" 'BEGIN {printf "%.2f", a / b}') "
    [ "${rss[$op]:-0}" -ge "$r_mb" ] || rss[$op]=$r_mb
  done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "model: $SHAPE, $(numfmt --to=si "$SIZE")B of bf16 safetensors; cpus: $(nproc); $REPS repetitions; $(uptime | sed 's/.*load/load/')"
printf '%-34s %9s %7s %12s  %s\n' operation "time (s)" "vs cp" "peak RSS MB" "ratios to the cp of each repetition"
printf '%-34s %9.2f %7.2f %12s  %s\n' "cp target safetensors" "$(median <<< "${times[cp]}")" 1 "${rss[cp]}" "(cp times: ${times[cp]% })"
label() {
  case $1 in
    apply) echo "apply (target + vec, bf16)" ;;
    apply+sha256) echo "apply, with input sha256" ;;
    apply+sha256-cached) echo "apply, sha256 from the hash cache" ;;
    extract-bf16) echo "extract --dtype bf16" ;;
    extract-lossless) echo "extract (lossless, $(numfmt --to=si "$(cat "$DIR/vsize")")B)" ;;
  esac
}
for op in "${ops[@]}"; do
  printf '%-34s %9.2f %7.2f %12s  %s\n' "$(label "$op")" "$(median <<< "${times[$op]}")" "$(median <<< "${ratios[$op]}")" "${rss[$op]}" "${ratios[$op]% }"
done
