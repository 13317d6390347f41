#!/usr/bin/env node
// Baseline for bench/bench_tokenizer: HF tokenizers (Node bindings) encoding the GSM8K
// test questions one call at a time and as one encodeBatch (which HF runs multi-threaded).
//   node bench.js TOKENIZER_JSON GSM8K_TEST_JSONL
const fs = require('fs');
const { Tokenizer } = require('@anush008/tokenizers');
async function main() {
  const [tokPath, dataPath] = process.argv.slice(2);
  const tok = Tokenizer.fromFile(tokPath);
  const qs = fs.readFileSync(dataPath, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l).question);
  const bytes = qs.reduce((a, q) => a + Buffer.byteLength(q, 'utf8'), 0);
  for (let pass = 0; pass < 2; ++pass) {  // pass 0 warms the cache
    let t0 = process.hrtime.bigint();
    let ntok = 0;
    for (const q of qs) ntok += (await tok.encode(q, null, { addSpecialTokens: false })).getIds().length;
    const seq = Number(process.hrtime.bigint() - t0) / 1e9;
    t0 = process.hrtime.bigint();
    const encs = await tok.encodeBatch(qs, { addSpecialTokens: false });
    const batch = Number(process.hrtime.bigint() - t0) / 1e9;
    if (pass === 1)
      console.log(JSON.stringify({ questions: qs.length, bytes, tokens: ntok, batch_tokens: encs.length,
        sequential_MBps: bytes / seq / 1e6, batch_MBps: bytes / batch / 1e6 }));
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
