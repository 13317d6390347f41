#!/usr/bin/env bash
# Inference throughput of rvec on Qwen2.5-0.5B- and 1.5B-shaped random bf16 models
# (made with `rvec testmodel`): prefill of a 512-token prompt, decode at batch 1, 16, 64,
# in the exact f32 path and with --bf16-dot, next to the memory-bandwidth bound that
# `rvec bench` measures in the same run. Usage: bench/infer_bench.sh [0.5B 1.5B]
# Env: RVEC_BIN (default build/rvec), MODELS (default /tmp/rvec-bench-models), THREADS (2),
# OMP_WAIT_POLICY (default passive).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${RVEC_BIN:-build/rvec}
MODELS=${MODELS:-/tmp/rvec-bench-models}
THREADS=${THREADS:-2}
# Idle OpenMP threads sleep instead of spinning: on a shared, oversubscribed machine a
# spinning barrier waits for descheduled threads (several times slower); on an idle
# machine OMP_WAIT_POLICY=active is a little faster.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
sizes=("$@")
((${#sizes[@]})) || sizes=(0.5B 1.5B)
for m in "${sizes[@]}"; do
  dir=$MODELS/Qwen2.5-$m-bf16
  [ -d "$dir" ] || "$BIN" testmodel --config data/configs/Qwen2.5-$m-Instruct.json -o "$dir" --dtype bf16 --quiet
  for mode in "" "--bf16-dot"; do
    "$BIN" bench "$dir" --threads "$THREADS" --prompt-tokens 512 --gen-tokens 0 --no-bandwidth --json $mode
    "$BIN" bench "$dir" --threads "$THREADS" --prompt-tokens 16 --gen-tokens 64 --batch 1 --json $mode
  done
  "$BIN" bench "$dir" --threads "$THREADS" --prompt-tokens 16 --gen-tokens 32 --batch 16 --json
  "$BIN" bench "$dir" --threads "$THREADS" --prompt-tokens 16 --gen-tokens 16 --batch 64 --json
done
