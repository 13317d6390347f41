#!/usr/bin/env python3
"""Evaluate the toy family on toy_arith with the bf16 checkpoints, exactly as rvec does.

    tools/toy/run.sh tools/toy/eval.py --dir data/toy [--write-expected]

Instruct-side protocol (rvec's toy_arith task): prompt = chat template with one user message
(the question) + generation prompt; greedy; <= 96 new tokens; stop at <|im_end|> / <|endoftext|>;
answer = first match of `#### (\\-?[0-9\\.\\,]+)` (commas stripped); exact match with the gold
number.  SFT / GRPO are also scored in their own plain format (`Question: q\\nAnswer:\\n`).

Vectors: v = GRPO - SFT (f32 of the bf16 weights, all tensors); a model W + alpha*v is computed
in f32 and rounded once to bf16.  Random control: per tensor a Gaussian (torch.Generator seed
--rand-seed) scaled to ||v_tensor||, applied with alpha = +1 and -1.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import task  # noqa: E402
from model import Qwen2, generate, load_safetensors, load_weights  # noqa: E402
from toklib import Tokenizer, render_chat  # noqa: E402


def load_dir(d):
    with open(f"{d}/config.json") as f:
        c = json.load(f)
    return c, load_safetensors(f"{d}/model.safetensors")


def bf16(a):
    from model import bf16_bits_to_f32, f32_to_bf16_bits
    return bf16_bits_to_f32(f32_to_bf16_bits(a)).copy()


def make_model(cfg, tensors):
    from model import DEFAULT_CFG
    m = Qwen2(cfg["vocab_size"], {k: cfg[k] for k in DEFAULT_CFG})
    load_weights(m, tensors)
    m.eval()
    return m


def evaluate(model, tok, rows, fmt, batch=100, max_new=96):
    stops = [tok.special_ids["<|im_end|>"], tok.special_ids["<|endoftext|>"]]
    pad = tok.special_ids["<|endoftext|>"]
    prompts = []
    for r in rows:
        text = render_chat([{"role": "user", "content": r["question"]}], True) if fmt == "chat" \
            else task.plain_prompt(r["question"])
        prompts.append(tok.encode(text))
    order = sorted(range(len(rows)), key=lambda i: len(prompts[i]))  # less padding
    outs = [None] * len(rows)
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        gen = generate(model, [prompts[i] for i in idx], max_new, stops, pad)
        for i, g in zip(idx, gen):
            outs[i] = tok.decode([t for t in g if t not in stops])
    correct = [task.is_correct(o, r["answer"].rsplit("#### ", 1)[1]) for o, r in zip(outs, rows)]
    return correct, outs


def mcnemar(base, other):
    """Exact two-sided McNemar test (binomial on the discordant pairs)."""
    b = sum(1 for x, y in zip(base, other) if x and not y)
    c = sum(1 for x, y in zip(base, other) if y and not x)
    n = b + c
    if n == 0:
        return b, c, 1.0
    k = min(b, c)
    p = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n * 2
    return b, c, min(1.0, p)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="data/toy")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--grpo", default=None, help="GRPO model dir (default DIR/grpo)")
    ap.add_argument("--instruct", default=None, help="instruct model dir (default DIR/instruct)")
    ap.add_argument("--alphas", default="-1,1")
    ap.add_argument("--rand-seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-own-format", action="store_true")
    ap.add_argument("--no-random", action="store_true", help="skip the random-vector control")
    ap.add_argument("--json-out", default=None, help="also write the results JSON here")
    ap.add_argument("--write-expected", action="store_true", help="write DIR/expected.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    d = a.dir
    rows = [json.loads(line) for line in open(f"{d}/toy_arith_test.jsonl")]
    if a.limit:
        rows = rows[:a.limit]
    inst_dir = a.instruct or f"{d}/instruct"
    tok = Tokenizer.load(inst_dir)
    cfg, inst = load_dir(inst_dir)
    _, sft = load_dir(f"{d}/sft")
    _, grpo = load_dir(a.grpo or f"{d}/grpo")
    v = {k: grpo[k] - sft[k] for k in sft}
    vnorm = math.sqrt(sum(float((x.astype(np.float64) ** 2).sum()) for x in v.values()))
    g = torch.Generator().manual_seed(a.rand_seed)
    rnd = {}
    for k in sorted(v):
        z = torch.randn(v[k].shape, generator=g).numpy().astype(np.float32)
        nz = float(np.linalg.norm(z.astype(np.float64)))
        rnd[k] = z * np.float32(float(np.linalg.norm(v[k].astype(np.float64))) / nz if nz > 0 else 0.0)
    res = {"n": len(rows), "v_norm": vnorm, "models": {}}
    t0 = time.time()

    def run(name, tensors, fmt):
        c, outs = evaluate(make_model(cfg, tensors), tok, rows, fmt)
        acc = 100.0 * sum(c) / len(c)
        res["models"][name] = {"format": fmt, "accuracy": acc, "correct": "".join("1" if x else "0" for x in c)}
        print(f"[{time.time() - t0:5.0f}s] {name:24s} {fmt:5s} acc {acc:6.2f}%", flush=True)
        return c, outs

    base_c, outs = run("instruct", inst, "chat")
    res["sample_outputs"] = [{"question": r["question"], "output": o} for r, o in list(zip(rows, outs))[:3]]
    for al in [float(x) for x in a.alphas.split(",")]:
        run(f"instruct{al:+g}v", {k: bf16(inst[k] + np.float32(al) * v[k]) for k in inst}, "chat")
    for al in (() if a.no_random else (1.0, -1.0)):
        run(f"instruct{al:+g}rand", {k: bf16(inst[k] + np.float32(al) * rnd[k]) for k in inst}, "chat")
    if not a.skip_own_format:
        run("sft", sft, "plain")
        run("grpo", grpo, "plain")
        run("sft_chat", sft, "chat")
        run("grpo_chat", grpo, "chat")
    print(f"||v|| = {vnorm:.4f}")
    for name, m in res["models"].items():
        if name.startswith("instruct") and name != "instruct":
            b, c, p = mcnemar(base_c, [ch == "1" for ch in m["correct"]])
            m["delta"] = m["accuracy"] - res["models"]["instruct"]["accuracy"]
            m["mcnemar"] = {"lost": b, "gained": c, "p": p}
            print(f"{name:24s} delta {m['delta']:+6.2f}  lost {b:4d} gained {c:4d}  McNemar p = {p:.3g}")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(res, f, indent=1)
    if a.write_expected:
        with open(f"{d}/expected.json.tmp", "w") as f:
            json.dump(res, f, indent=1)
        os.replace(f"{d}/expected.json.tmp", f"{d}/expected.json")


if __name__ == "__main__":
    main()
