#!/usr/bin/env bash
# Decode tokens/s against context length on the 0.5B shape (random weights), tiled attention
# and the previous untiled kernel alternating in the same run.
#   bench/context_bench.sh [RVEC_BIN] [MODEL_DIR] [THREADS]
set -euo pipefail
BIN=${1:-build/rvec}
MODEL=${2:-/tmp/rvec-bench-q05}
THREADS=${3:-2}
[ -d "$MODEL" ] || "$BIN" testmodel -o "$MODEL" --config data/configs/Qwen2.5-0.5B-Instruct.json >&2
lscpu | grep -E '^(Model name|CPU family|Model):' >&2
date -u >&2
for ctx in 512 4096 16384 32768; do
  for att in tiled untiled; do
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
    "$BIN" bench "$MODEL" --context "$ctx" --gen-tokens 16 --reps 2 --threads "$THREADS" --no-bandwidth --attention "$att" --json
  done
done
