#!/usr/bin/env bash
# llama.cpp cross-check of `rvec export gguf-lora` (README "LoRA adapters"): a rank-8 adapter of a
# perturbed copy of BASE, exported as a LoRA GGUF and run by llama.cpp on an f32 GGUF of BASE with
# the adapter scaled by ALPHA (as --lora-scaled), against rvec's logits of BASE merged with
# `rvec apply --lora ADAPTER:ALPHA`, on 40 random tokens. Needs `npm install` here.
# Usage: tools/llama-cpp-baseline/lora_check.sh [RVEC] [BASE] (defaults: build/rvec, the qwen2 fixture)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
R=${1:-$here/../../build/rvec}
BASE=${2:-$here/../../../shared/fixtures/qwen2_tiny_tied_gqa14x2/model}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$R" testmodel --like "$BASE" --perturb 0.02 --seed 5 -q -o "$T/tuned" >/dev/null
"$R" extract --base "$BASE" --tuned "$T/tuned" --dtype f32 -q -o "$T/vec" >/dev/null
"$R" lora extract "$T/vec" --rank 8 --skip-embeddings -q -o "$T/ad" >/dev/null
"$R" export gguf "$BASE" --type f32 -q -o "$T/base.gguf" >/dev/null
"$R" export gguf-lora "$T/ad" --base "$BASE" -q -o "$T/ad.gguf" >/dev/null
TOK=$(node -e 'let s=1;const a=[];for(let i=0;i<40;++i){s=(s*48271)%2147483647;a.push(1+s%999)}console.log(a.join(","))')
"$R" logits "$BASE" --tokens "$TOK" --out "$T/r0.npy" >/dev/null 2>&1
node "$here/logits_llama_cpp.mjs" "$T/base.gguf" "$TOK" "$T/l0.json" 2>/dev/null
node "$here/compare_logits.mjs" "$T/r0.npy" "$T/l0.json" "no adapter"
for A in 0.5 1.5; do
  "$R" apply "$BASE" --lora "$T/ad:$A" --dtype f32 -q -o "$T/m$A" >/dev/null
  "$R" logits "$T/m$A" --tokens "$TOK" --out "$T/r$A.npy" >/dev/null 2>&1
  node "$here/logits_llama_cpp.mjs" "$T/base.gguf" "$TOK" "$T/l$A.json" "$T/ad.gguf:$A" 2>/dev/null
  node "$here/compare_logits.mjs" "$T/r$A.npy" "$T/l$A.json" "--lora-scaled $A"
done
