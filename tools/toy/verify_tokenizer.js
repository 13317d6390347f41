// Check that the Python tokenizer (toklib.py) agrees with the Rust HF tokenizers library.
// Usage: node verify_tokenizer.js TOKENIZER_JSON SAMPLES_JSONL
//   SAMPLES_JSONL rows: {"text": str, "ids": [int]}  (written by tok_samples.py)
const fs = require("fs");
const { Tokenizer } = require("@anush008/tokenizers");

async function main() {
  const [tokPath, samplesPath] = process.argv.slice(2);
  const tok = Tokenizer.fromFile(tokPath);
  const rows = fs.readFileSync(samplesPath, "utf8").split("\n").filter((l) => l.length > 0).map((l) => JSON.parse(l));
  let bad = 0, tokens = 0, decBad = 0;
  for (const r of rows) {
    const enc = await tok.encode(r.text, null, { addSpecialTokens: true });
    const ids = Array.from(enc.getIds());
    tokens += ids.length;
    if (ids.length !== r.ids.length || ids.some((x, i) => x !== r.ids[i])) {
      if (bad < 5) console.log("MISMATCH", JSON.stringify(r.text), JSON.stringify(ids), JSON.stringify(r.ids));
      bad++;
    }
    const dec = await tok.decode(ids, false);
    if (dec !== r.text) {
      if (decBad < 5) console.log("DECODE MISMATCH", JSON.stringify(r.text), JSON.stringify(dec));
      decBad++;
    }
  }
  console.log(`${rows.length} texts, ${tokens} tokens: ${bad} encode mismatches, ${decBad} decode mismatches`);
  process.exit(bad || decBad ? 1 : 0);
}
main().catch((e) => { console.error(e); process.exit(2); });
