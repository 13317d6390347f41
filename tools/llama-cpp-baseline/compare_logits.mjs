// max|rvec − llama.cpp| / max|rvec logit| and top-1 agreement between `rvec logits --out F.npy`
// (f32, [T, V]) and logits_llama_cpp.mjs's OUT.json on the same tokens.
// Usage: node compare_logits.mjs RVEC.npy LLAMA.json [LABEL]
import { readFileSync } from "node:fs";
const [npy, js, a = ""] = process.argv.slice(2);
const b = readFileSync(npy); const hl = b.readUInt16LE(8); const data = new Float32Array(b.buffer.slice(b.byteOffset + 10 + hl, b.byteOffset + b.length));
const L = JSON.parse(readFileSync(js)); const V = L.vocab, T = L.logits.length;
const off = data.length - T * V; let md = 0, mx = 0, agree = 0;
for (let t = 0; t < T; ++t) { let ia = 0, ib = 0;
  for (let v = 0; v < V; ++v) { const x = data[off + t * V + v], y = L.logits[t][v];
    md = Math.max(md, Math.abs(x - y)); mx = Math.max(mx, Math.abs(x));
    if (x > data[off + t * V + ia]) ia = v; if (y > L.logits[t][ib]) ib = v; }
  agree += ia === ib; }
console.log(`${a}${a ? ": " : ""}max|d|/max|logit| = ${(md / mx).toExponential(2)}, top-1 agree ${(100 * agree / T).toFixed(1)} %`);
