#!/usr/bin/env bash
# Inference throughput of rvec on Qwen2.5-0.5B- and 1.5B-shaped random bf16 models
# (made with `rvec testmodel`): prefill of 128- and 512-token prompts, decode at batch 1, 16, 64,
# in the exact f32 path and with --bf16-dot, next to the memory-bandwidth bound that
# `rvec bench` measures in the same run (read bandwidth / weight bytes per step); prints a
# Markdown table. Usage: bench/infer_bench.sh [0.5B 1.5B]
# Env: RVEC_BIN (default build/rvec), MODELS (default /tmp/rvec-bench-models), THREADS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${RVEC_BIN:-build/rvec}
MODELS=${MODELS:-/tmp/rvec-bench-models}
THREADS=${THREADS:-2}
# OMP_WAIT_POLICY is left as the caller has it: libgomp's default (spin briefly, then sleep)
# suits an idle machine; on a shared, oversubscribed one set OMP_WAIT_POLICY=passive (a
# spinning barrier then waits for descheduled threads).
sizes=("$@")
((${#sizes[@]})) || sizes=(0.5B 1.5B)
# One JSON object per measurement, then a Markdown table of them.
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for m in "${sizes[@]}"; do
  dir=$MODELS/Qwen2.5-$m-bf16
  [ -d "$dir" ] || "$BIN" testmodel --config data/configs/Qwen2.5-$m-Instruct.json -o "$dir" --dtype bf16 --quiet
  for mode in "" "--bf16-dot"; do
    for pp in 128 512; do
      "$BIN" bench "$dir" --threads "$THREADS" --prompt-tokens $pp --gen-tokens 0 --no-bandwidth --json $mode >>"$out"
    done
    "$BIN" bench "$dir" --threads "$THREADS" --prompt-tokens 16 --gen-tokens 64 --batch 1 --json $mode >>"$out"
  done
  for mode in "" "--bf16-dot"; do
    "$BIN" bench "$dir" --threads "$THREADS" --prompt-tokens 16 --gen-tokens 32 --batch 16 --json $mode >>"$out"
    "$BIN" bench "$dir" --threads "$THREADS" --prompt-tokens 16 --gen-tokens 16 --batch 64 --json $mode >>"$out"
  done
done
python3 - "$out" <<'PY'
import json, os, sys
print("| model | measurement | matmul | tok/s | read bandwidth (same run) | bandwidth bound tok/s |")
print("|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    j = json.loads(line)
    name = os.path.basename(j["model"].rstrip("/"))
    if j["gen_tokens"] == 0:
        what, val, bw, bound = f"prefill pp{j['prompt_tokens']}", j["prefill_tokens_per_s"], "–", "–"
    else:
        what = f"decode tg{j['gen_tokens']}, batch {j['batch']} (aggregate)"
        val = j["decode_tokens_per_s"]
        bw = f"{j['read_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s"
        bound = f"{j['decode_bandwidth_bound_tokens_per_s']:.1f} ({j['weight_bytes_per_decode_step'] / 1e6:.0f} MB/step)"
    print(f"| {name} | {what} | {j['matmul']} | {val:.1f} | {bw} | {bound} |")
PY
