// Logits of llama.cpp (node-llama-cpp's prebuilt CPU binaries) at every position of a token
// sequence, to compare an `rvec export gguf` file with rvec's own logits on the same tokens.
// Usage: node logits_llama_cpp.mjs MODEL.gguf 1,2,3,... OUT.json [LORA.gguf[:SCALE]]
// With LORA.gguf (`rvec export gguf-lora`), the adapter is applied at SCALE (default 1), as
// llama-cli's --lora-scaled LORA.gguf SCALE does: compare with rvec's logits of the model merged
// by `rvec apply MODEL --lora ADAPTER:SCALE`.
// OUT.json: {"vocab": V, "logits": [[...V floats...], ...]} (one row per position).
import { writeFileSync } from "node:fs";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const [modelPath, tokArg, outPath, loraArg] = process.argv.slice(2);
if (!outPath) {
  console.error("usage: node logits_llama_cpp.mjs MODEL.gguf TOKENS(1,2,3) OUT.json [LORA.gguf[:SCALE]]");
  process.exit(2);
}
const tokens = tokArg.split(",").map(Number);
// "file.gguf:0.5" -> {filePath: "file.gguf", scale: 0.5}; a path without a numeric suffix has scale 1.
function lora(arg) {
  const m = /^(.*):([-+0-9.eE]+)$/.exec(arg);
  return m ? { filePath: m[1], scale: Number(m[2]) } : { filePath: arg, scale: 1 };
}
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });

const context = await model.createContext({ contextSize: Math.max(256, tokens.length + 8), batchSize: 512,
                                            threads: 2, sequences: 1, flashAttention: false,
                                            experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
                                            ...(loraArg ? { lora: { adapters: [lora(loraArg)] } } : {}) });
const seq = context.getSequence();
const res = await seq.controlledEvaluate(tokens.map(t => [t, { generateNext: { logits: true } }]));
const rows = res.map(r => {
  const m = r.next.logits;  // Map token -> logit, sorted by logit
  const row = new Array(m.size);
  for (const [t, l] of m) row[t] = l;
  return row;
});
writeFileSync(outPath, JSON.stringify({ vocab: rows[0].length, logits: rows }));
await context.dispose();
await model.dispose();
console.error(`wrote ${outPath}: ${rows.length} x ${rows[0].length}`);
