#!/usr/bin/env python3
"""Self-checks of the toy trainer's building blocks against independent references:
- model.py's Qwen2 forward vs the golden fixtures' reference logits (HF Qwen2 semantics,
  computed by llama.cpp and a float64 numpy port; ../shared/fixtures), tied fixtures in F32 and BF16;
- toklib.py vs the fixtures' real Qwen2.5 tokenizer ids for their (ASCII) chat text;
- bf16 round-to-nearest-even on hand-derived bit patterns; safetensors round trip.
Run: tools/toy/run.sh tools/toy/test_toy.py [FIXTURES_DIR]"""
import json
import os
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import task  # noqa: E402
from model import (DEFAULT_CFG, Qwen2, f32_to_bf16_bits, load_safetensors, load_weights,  # noqa: E402
                   save_safetensors)
from toklib import Tokenizer, render_chat  # noqa: E402

FIX = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../../shared/fixtures")


def check_fixture(name):
    d = f"{FIX}/{name}"
    cfg = json.load(open(f"{d}/model/config.json"))
    m = Qwen2(cfg["vocab_size"], {k: cfg[k] for k in DEFAULT_CFG})
    load_weights(m, load_safetensors(f"{d}/model/model.safetensors"))
    seqs = json.load(open(f"{d}/tokens.json"))["sequences"]
    worst = 0.0
    for i, s in enumerate(seqs):
        ref = np.load(f"{d}/logits_ref_s{i}.npy")
        with torch.no_grad():
            got = m(torch.tensor([s]))[0].numpy()
        err = float(np.abs(got - ref).max() / np.abs(ref).max())
        worst = max(worst, err)
    assert worst < 1e-4, (name, worst)
    print(f"ok  {name}: max |logit - ref| / max|ref| = {worst:.2e}")


def check_tokenizer(name):
    d = f"{FIX}/{name}"
    tj = json.load(open(f"{d}/model/tokenizer.json"))
    tok = Tokenizer([tuple(m.split(" ")) if isinstance(m, str) else m for m in tj["model"]["merges"]])
    # the fixture's vocab is the byte symbols in Qwen's order, then merges: map through it
    text = json.load(open(f"{d}/tokens.json"))["texts"]["chat"]
    ids = json.load(open(f"{d}/tokens.json"))["sequences"][1]
    vocab = tj["model"]["vocab"]
    specials = {t["content"]: t["id"] for t in tj["added_tokens"]}
    inv = {i: s for s, i in tok.vocab.items()}
    inv.update({i: s for s, i in tok.special_ids.items()})
    mine = [specials[inv[i]] if inv[i] in specials else vocab[inv[i]] for i in tok.encode(text)]
    assert mine == ids, (mine, ids)
    print(f"ok  tokenizer matches HF ids on {name}'s chat text ({len(ids)} tokens)")


def check_bf16():
    vals = np.array([1.0, 1.00390625, 1.005859375, 1.0078125 + 0.00390625, -2.5, 0.0, 3.0e38], dtype=np.float32)
    # 1+2^-8 is a tie between 1 and 1+2^-7 -> even (1.0); 1+1.5*2^-8 -> up; 1+2^-7+2^-8 tie -> even (1+2^-6)
    want = [0x3F80, 0x3F80, 0x3F81, 0x3F82, 0xC020, 0x0000, 0x7F62]
    got = [int(x) for x in f32_to_bf16_bits(vals)]
    assert got == want, [hex(x) for x in got]
    with tempfile.TemporaryDirectory() as t:
        a = {"x": np.array([[1.0, -2.0], [0.5, 3.0]], dtype=np.float32)}
        save_safetensors(f"{t}/m.safetensors", a)
        raw = open(f"{t}/m.safetensors", "rb").read()
        n = int.from_bytes(raw[:8], "little")
        h = json.loads(raw[8:8 + n])
        assert h["x"] == {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}
        assert h["__metadata__"] == {"format": "pt"}
        assert np.array_equal(load_safetensors(f"{t}/m.safetensors")["x"], a["x"])
    print("ok  bf16 rounding (round-to-nearest-even) and safetensors layout")


def check_task():
    import random
    rng = random.Random(0)
    for _ in range(200):
        p = task.make_problem(rng)
        cot, ans = task.solve(p)
        assert task.extract(cot) == str(ans) and all(0 <= int(x) <= 99 for x in
                                                      __import__("re").findall(r"\d+", cot))
    p = {"question": "", "start": 43, "ops": [("-", 17), ("*", 2)], "k": 2}
    assert task.solve(p) == ("43-17=26\n26*2=52\n#### 52", 52)

    class Always:
        def random(self):
            return 0.0
    assert task.solve(p, Always(), 1.0) == ("43-17=36\n36*2=72\n#### 72", 72)  # forgotten borrow
    assert render_chat([{"role": "user", "content": "hi"}], True) == \
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert task.extract("12-3=9\n#### 1,009 x") == "1009"
    print("ok  task generator, flawed teacher, answer extraction, chat rendering")


if __name__ == "__main__":
    check_bf16()
    check_task()
    check_fixture("qwen2_tiny_tied_gqa14x2")
    check_fixture("qwen2_tiny_bf16_gqa8x2")
    check_tokenizer("qwen2_tiny_tied_gqa14x2")

