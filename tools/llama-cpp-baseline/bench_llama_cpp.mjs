// Times llama.cpp (through node-llama-cpp's prebuilt CPU binaries) like `rvec bench`:
// prefill of a random PP-token prompt, then TG greedy decode steps at batch 1; best of REPS.
// Usage: node bench_llama_cpp.mjs MODEL.gguf [PP=128] [TG=64] [THREADS=2] [REPS=3]
// Prints one JSON line with prefill_tokens_per_s and decode_tokens_per_s.
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const [modelPath, pp = "128", tg = "64", threads = "2", reps = "3"] = process.argv.slice(2);
if (!modelPath) {
  console.error("usage: node bench_llama_cpp.mjs MODEL.gguf [PP] [TG] [THREADS] [REPS]");
  process.exit(2);
}
const PP = Number(pp), TG = Number(tg), T = Number(threads), R = Number(reps);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const context = await model.createContext({ contextSize: 2048, batchSize: Math.max(PP, 512), threads: T, sequences: 1 });
const seq = context.getSequence();
let seed = 1;
const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed);
let bestPP = 0, bestTG = 0;
for (let r = -1; r < R; ++r) {  // r = -1: untimed warm-up
  await seq.clearHistory();
  const prompt = Array.from({ length: PP }, () => 100 + (rnd() % 30000));
  let t0 = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(prompt);
  const ppS = (performance.now() - t0) / 1000;
  let n = 0;
  t0 = performance.now();
  for await (const _ of seq.evaluate([100 + (rnd() % 30000)], { temperature: 0 })) {
    if (++n >= TG) break;
  }
  const tgS = (performance.now() - t0) / 1000;
  if (r >= 0) {
    bestPP = Math.max(bestPP, PP / ppS);
    bestTG = Math.max(bestTG, n / tgS);
  }
}
console.log(JSON.stringify({ engine: "llama.cpp (node-llama-cpp " + (await import("node-llama-cpp/package.json", { with: { type: "json" } }).then(m => m.default.version).catch(() => "?")) + ")",
  model: modelPath, threads: T, prompt_tokens: PP, gen_tokens: TG, prefill_tokens_per_s: bestPP, decode_tokens_per_s: bestTG }));
await context.dispose();
await model.dispose();
