#!/usr/bin/env node
// Expected token ids from Hugging Face tokenizers (Rust library, Node bindings
// `@anush008/tokenizers`) for rvec's tokenizer tests.
//
//   node oracle.js TOKENIZER_JSON STRINGS_JSON OUT_JSON
//
// STRINGS_JSON is a JSON array of strings (or objects {"text": ...}). OUT_JSON gets
// {"tokenizer": ..., "generator": ..., "cases": [{"text", "ids", "decoded",
// "decoded_skip_special"}]} where ids = encode(text, addSpecialTokens=false): the
// raw tokenizer pipeline (normalizer, added tokens, pre-tokenizer, BPE) with no
// post-processor, which is what rvec's Tokenizer::encode reproduces.
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('@anush008/tokenizers');

async function main() {
  const [tokPath, stringsPath, outPath] = process.argv.slice(2);
  if (!outPath) {
    console.error('usage: node oracle.js TOKENIZER_JSON STRINGS_JSON OUT_JSON');
    process.exit(2);
  }
  const tok = Tokenizer.fromFile(tokPath);
  const strings = JSON.parse(fs.readFileSync(stringsPath, 'utf8')).map((s) => (typeof s === 'string' ? s : s.text));
  const cases = [];
  for (const text of strings) {
    const enc = await tok.encode(text, null, { addSpecialTokens: false });
    const ids = Array.from(enc.getIds());
    cases.push({
      text,
      ids,
      decoded: await tok.decode(ids, false),
      decoded_skip_special: await tok.decode(ids, true),
    });
  }
  const pkg = require('@anush008/tokenizers/package.json');
  const out = {
    tokenizer: path.basename(path.dirname(path.resolve(tokPath))) + '/' + path.basename(tokPath),
    generator: `tools/tokenizer-oracle/oracle.js with ${pkg.name}@${pkg.version} (HF tokenizers)`,
    cases,
  };
  fs.writeFileSync(outPath, JSON.stringify(out, null, 1) + '\n');
  console.error(`${outPath}: ${cases.length} cases`);
}
main().catch((e) => { console.error(e); process.exit(1); });
