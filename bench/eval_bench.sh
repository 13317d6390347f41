#!/usr/bin/env bash
# Evaluation speed of `rvec eval` on a Qwen2.5-0.5B-shaped random bf16 model (made with
# `rvec testmodel`): LIMIT GSM8K prompts (gsm8k, 5-shot, --max-gen-tokens GEN) and LIMIT SciQ
# documents (4 log-likelihood requests each), batched (--batch BATCH, the engine's continuous
# batching) versus one at a time (--batch 1). A random model never emits EOS or a stop string, so
# every GSM8K prompt generates exactly GEN tokens: the GSM8K time is the time for LIMIT x GEN
# generated tokens plus the prompts' prefill, an upper bound for a real model. Each time includes
# loading the model and the task; the "startup" column is that part alone (a --limit 0 run).
# Usage: bench/eval_bench.sh
# Env: RVEC_BIN (default build/rvec), MODELS (default /tmp/rvec-bench-models), THREADS (2),
# LIMIT (100), GEN (256), BATCH (16), TASKS ("gsm8k sciq"), OMP_WAIT_POLICY (default passive).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${RVEC_BIN:-build/rvec}
MODELS=${MODELS:-/tmp/rvec-bench-models}
THREADS=${THREADS:-2}
LIMIT=${LIMIT:-100}
GEN=${GEN:-256}
BATCH=${BATCH:-16}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
dir=$MODELS/Qwen2.5-0.5B-bf16
[ -d "$dir" ] || "$BIN" testmodel --config data/configs/Qwen2.5-0.5B-Instruct.json -o "$dir" --dtype bf16 --quiet
out=$(mktemp -d /tmp/rvec-eval-bench.XXXXXX)
trap 'rm -rf "$out"' EXIT

# Prints the wall-clock seconds of one `rvec eval` run: time_eval TASK BATCH LIMIT.
time_eval() {
  local task=$1 batch=$2 limit=$3 start end
  start=$(date +%s.%N)
  "$BIN" eval "$dir" --tasks "$task" --limit "$limit" --max-gen-tokens "$GEN" --batch "$batch" \
    --threads "$THREADS" --quiet --out "$out/$task-$batch-$limit" >/dev/null
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'
}

echo "rvec eval on $dir: $LIMIT documents per task, $THREADS threads, gsm8k --max-gen-tokens $GEN"
printf '| task | documents | startup (s) | --batch %s (s) | --batch 1 (s) | speed-up |\n' "$BATCH"
printf '|---|---:|---:|---:|---:|---:|\n'
for task in ${TASKS:-gsm8k sciq}; do
  t0=$(time_eval "$task" 1 0)
  tb=$(time_eval "$task" "$BATCH" "$LIMIT")
  t1=$(time_eval "$task" 1 "$LIMIT")
  printf '| %s | %s | %.1f | %.1f | %.1f | %.2fx |\n' "$task" "$LIMIT" "$t0" "$tb" "$t1" \
    "$(awk -v a="$t1" -v b="$tb" -v z="$t0" 'BEGIN { print (a - z) / (b - z) }')"
done
echo "speed-up: (--batch 1 - startup) / (--batch $BATCH - startup)"
