#!/usr/bin/env bash
# Decode tokens/s against context length on the 0.5B shape (random weights, batch 1), the
# configurations alternating in the same run, ROUNDS times. JSON lines on stdout (rvec bench
# --json), then a Markdown table of each configuration's figures (when python3 is there).
#   bench/context_bench.sh [RVEC_BIN] [MODEL_DIR] [THREADS]
# CONFIGS: ATTENTION:KV_DTYPE[:bf16dot] (default "tiled:f32 untiled:f32": the tiled kernel against
# the previous one); e.g. CONFIGS="tiled:f32 tiled:bf16 tiled:f16" for --kv-cache-dtype, and
# tiled:bf16:bf16dot for --bf16-dot over a bf16 cache (its attention in bf16 pairs).
# CONTEXTS (default "512 4096 16384 32768"), ROUNDS (1), GEN (16).
set -euo pipefail
BIN=${1:-build/rvec}
MODEL=${2:-/tmp/rvec-bench-q05}
THREADS=${3:-2}
CONFIGS=${CONFIGS:-"tiled:f32 untiled:f32"}
CONTEXTS=${CONTEXTS:-"512 4096 16384 32768"}
ROUNDS=${ROUNDS:-1}
GEN=${GEN:-16}
[ -d "$MODEL" ] || "$BIN" testmodel -o "$MODEL" --config data/configs/Qwen2.5-0.5B-Instruct.json >&2
lscpu | grep -E '^(Model name|CPU family|Model):' >&2
date -u >&2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for ctx in $CONTEXTS; do
  for round in $(seq "$ROUNDS"); do
    for cfg in $CONFIGS; do
      IFS=: read -r att kv dot <<<"$cfg"
      case $dot in
        "") extra=() ;;
        bf16dot) extra=(--bf16-dot) ;;
        *) echo "context_bench: '$cfg': the third field may only be bf16dot" >&2; exit 1 ;;
      esac
      echo "load: $(cut -d' ' -f1-3 /proc/loadavg) (context $ctx, $cfg, round $round)" >&2
      "$BIN" bench "$MODEL" --context "$ctx" --gen-tokens "$GEN" --reps 2 --threads "$THREADS" --no-bandwidth \
        --attention "$att" --kv-cache-dtype "$kv" "${extra[@]}" --json | tee -a "$out"
    done
  done
done
command -v python3 > /dev/null || exit 0
python3 - "$out" "$CONFIGS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
cfgs = sys.argv[2].split()
ctxs = sorted({r["context"] for r in rows})
print("\n| context | " + " | ".join(f"{c} tok/s" for c in cfgs) + " |")
print("|---:|" + "---:|" * len(cfgs))
for n in ctxs:
    cells = []
    for c in cfgs:
        att, kv, dot = (c.split(":") + [""])[:3]
        v = [r["decode_tokens_per_s"] for r in rows
             if r["context"] == n and r["attention"] == att and r["kv_cache_dtype"] == kv
             and (r["matmul"] == "bf16dot") == (dot == "bf16dot")]
        cells.append(", ".join(f"{x:.1f}" for x in v))
    print(f"| {n:,} | " + " | ".join(cells) + " |")
PY
