#!/usr/bin/env bash
# rvec against llama.cpp on the same machine, in the same run, on the same weights:
# converts the Qwen2.5-shaped bf16 test models (rvec testmodel) to GGUF
# (tools/llama-cpp-baseline/to_gguf.py) and times llama.cpp through the prebuilt CPU
# binaries of node-llama-cpp (npm; its zen4/icelake/... variant is picked at run time),
# alternating rvec and llama.cpp runs ROUNDS times and keeping each one's best.
# Prints a Markdown table with rvec / llama.cpp ratios.
# Usage: bench/llama_cpp_compare.sh [0.5B 1.5B]
# Env: RVEC_BIN (build/rvec), MODELS (/tmp/rvec-bench-models), THREADS (2), ROUNDS (3),
#      PP (128), TG (64).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${RVEC_BIN:-build/rvec}
MODELS=${MODELS:-/tmp/rvec-bench-models}
THREADS=${THREADS:-2} ROUNDS=${ROUNDS:-3} PP=${PP:-128} TG=${TG:-64}
# OMP_WAIT_POLICY is left as the caller has it (libgomp's default spins briefly, then
# sleeps); llama.cpp's own thread pool spins. Run on an idle machine.
base=tools/llama-cpp-baseline
[ -d $base/node_modules/node-llama-cpp ] || (cd $base && npm ci --no-audit --no-fund --ignore-scripts >/dev/null)
sizes=("$@")
((${#sizes[@]})) || sizes=(0.5B 1.5B)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for m in "${sizes[@]}"; do
  dir=$MODELS/Qwen2.5-$m-bf16
  [ -d "$dir" ] || "$BIN" testmodel --config data/configs/Qwen2.5-$m-Instruct.json -o "$dir" --dtype bf16 --quiet
  [ -f "$dir.gguf" ] || python3 $base/to_gguf.py "$dir" "$dir.gguf" >&2
  for ((r = 0; r < ROUNDS; ++r)); do
    node $base/bench_llama_cpp.mjs "$dir.gguf" "$PP" "$TG" "$THREADS" 1 | sed "s/^{/{\"size\":\"$m\",\"who\":\"llama.cpp\",/" >>"$out"
    for mode in "" "--bf16-dot"; do
      "$BIN" bench "$dir" --threads "$THREADS" --prompt-tokens "$PP" --gen-tokens "$TG" --reps 1 --json $mode \
        | sed "s/^{/{\"size\":\"$m\",\"who\":\"rvec\",/" >>"$out"
    done
  done
done
python3 - "$out" <<'PY'
import json, sys
best = {}
for line in open(sys.argv[1]):
    j = json.loads(line)
    key = (j["size"], j["who"] if j["who"] != "rvec" else f"rvec ({j['matmul']})")
    b = best.setdefault(key, {"pp": 0.0, "tg": 0.0, "bound": 0.0})
    b["pp"] = max(b["pp"], j["prefill_tokens_per_s"])
    b["tg"] = max(b["tg"], j["decode_tokens_per_s"])
    b["bound"] = max(b["bound"], j.get("decode_bandwidth_bound_tokens_per_s", 0.0))
j0 = json.loads(open(sys.argv[1]).readline())
print(f"prompt {j0['prompt_tokens']} tokens, {j0['gen_tokens']} decode steps, {j0['threads']} threads, best of the rounds")
print()
print("| model | engine | prefill tok/s | vs llama.cpp | decode tok/s | vs llama.cpp | read-bandwidth bound tok/s |")
print("|---|---|---|---|---|---|---|")
for (size, who), b in sorted(best.items()):
    ref = best[(size, "llama.cpp")]
    bound = f"{b['bound']:.1f}" if b["bound"] else "–"
    print(f"| Qwen2.5-{size} bf16 | {who} | {b['pp']:.1f} | {b['pp'] / ref['pp']:.2f}x | {b['tg']:.1f} | {b['tg'] / ref['tg']:.2f}x | {bound} |")
PY
