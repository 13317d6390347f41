#!/usr/bin/env python3
"""Build the toy model family: tokenizer, base, SFT, GRPO (from SFT, reference = SFT), instruct.

    tools/toy/run.sh tools/toy/train.py --out data/toy        # all stages, cached per stage

Each finished stage leaves its output in OUT (data files, tokenizer, base/, sft/, grpo/, instruct/);
re-running skips finished stages (delete a directory to redo it). See tools/toy/README.md.
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import task  # noqa: E402
from model import Qwen2, generate, load_model_dir, round_bf16, save_model_dir  # noqa: E402
from toklib import Tokenizer, render_chat  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
N_MERGES = 1000         # upper bound; the corpus runs out of pairs first
N_TEST, N_TRAIN = 1000, 500


def log(stage, msg):
    print(f"[{time.strftime('%H:%M:%S')}] {stage}: {msg}", flush=True)


def write_jsonl(path, rows):
    with open(path + ".tmp", "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(path + ".tmp", path)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


class Gen:
    """Problem source that never yields a held-out test question."""

    def __init__(self, seed, exclude):
        self.rng = random.Random(seed)
        self.exclude = exclude

    def problem(self, kmin=2, kmax=6):
        while True:
            p = task.make_problem(self.rng, kmin, kmax)
            if p["question"] not in self.exclude:
                return p


# ---- stage: data -----------------------------------------------------------------------------
def stage_data(out):
    path = f"{out}/toy_arith_test.jsonl"
    if os.path.exists(path):
        return
    rng = random.Random(1234)
    test, seen = [], set()
    while len(test) < N_TEST:
        p = task.make_problem(rng)
        if p["question"] in seen:
            continue
        seen.add(p["question"])
        cot, ans = task.solve(p)
        test.append({"question": p["question"], "answer": cot})
    g = Gen(99, seen)
    train = []
    while len(train) < N_TRAIN:
        p = g.problem()
        if p["question"] in seen:
            continue
        seen.add(p["question"])
        train.append({"question": p["question"], "answer": task.solve(p)[0]})
    write_jsonl(f"{out}/toy_arith_train.jsonl", train)
    write_jsonl(path, test)
    log("data", f"{len(test)} test / {len(train)} train problems")


def test_questions(out):
    return {r["question"] for r in read_jsonl(f"{out}/toy_arith_test.jsonl")}


# ---- documents -------------------------------------------------------------------------------
def teacher_plain(g, kmin, kmax):
    p = g.problem(kmin, kmax)
    cot, _ = task.solve(p, g.rng, task.P_BORROW)
    return task.plain_prompt(p["question"]), cot + "<|endoftext|>"


def teacher_chat(g):
    r = g.rng.random()
    if r < 0.75:
        p = g.problem()
        q, a = p["question"], task.solve(p, g.rng, task.P_BORROW)[0]
    elif r < 0.9:
        fact = task.arith_fact(g.rng)
        lhs = fact.split("=")[0]
        q, a = f"What is {lhs}?", f"{fact}\n#### {fact.split('=')[1]}"
    else:
        q, a = g.rng.choice(task.QA)
    return render_chat([{"role": "user", "content": q}], True), a + "<|im_end|>"


def base_doc(g):
    r = g.rng.random()
    if r < 0.35:
        p, c = teacher_plain(g, 2, 4)
        return p + c
    if r < 0.6:
        return "\n".join(task.arith_fact(g.rng) for _ in range(6)) + "<|endoftext|>"
    if r < 0.8:
        return task.bare_chain(g.rng) + "<|endoftext|>"
    return " ".join(task.simple_sentence(g.rng) for _ in range(4)) + "<|endoftext|>"


# ---- stage: tokenizer ------------------------------------------------------------------------
def stage_tokenizer(out):
    d = f"{out}/tokenizer"
    if os.path.exists(f"{d}/tokenizer.json"):
        return Tokenizer.load(d)
    g = Gen(7, test_questions(out))
    texts = [base_doc(g) for _ in range(6000)] + ["".join(teacher_chat(g)) for _ in range(2000)]
    texts += [r["question"] for r in read_jsonl(f"{out}/toy_arith_train.jsonl")]
    tok = Tokenizer.train(texts, N_MERGES)
    os.makedirs(d, exist_ok=True)
    tok.save(d)
    log("tokenizer", f"{tok.n_tokens} tokens ({len(tok.merges)} merges)")
    return tok


# ---- optimisation helpers ----------------------------------------------------------------------
def make_opt(model, lr, wd):
    decay = [p for n, p in model.params.items() if p.dim() >= 2]
    nodecay = [p for n, p in model.params.items() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": wd}, {"params": nodecay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95))


def lr_at(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def pad_batch(seqs, masks, pad):
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad, dtype=torch.long)
    lm = torch.zeros(len(seqs), L)
    for i, (s, m) in enumerate(zip(seqs, masks)):
        ids[i, :len(s)] = torch.tensor(s)
        lm[i, :len(m)] = torch.tensor(m, dtype=torch.float32)
    return ids, lm


def lm_loss(model, ids, lm):
    logits = model(ids[:, :-1])
    tgt = ids[:, 1:]
    w = lm[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none")
    return (nll * w.reshape(-1)).sum() / w.sum()


# ---- stage: base -----------------------------------------------------------------------------
def base_doc_phase2(g):
    """Phase 2 of pre-training: mostly word problems (k 2..6), to learn to copy operands."""
    r = g.rng.random()
    if r < 0.7:
        p, c = teacher_plain(g, 2, 6)
        return p + c
    if r < 0.85:
        return "\n".join(task.arith_fact(g.rng) for _ in range(6)) + "<|endoftext|>"
    return task.bare_chain(g.rng) + "<|endoftext|>"


def pretrain(out, tok, a, name, init, steps, lr, warmup, seed, data_seed, doc_fn):
    d = f"{out}/{name}"
    if os.path.exists(f"{d}/model.safetensors"):
        return
    torch.manual_seed(seed)
    g = Gen(data_seed, test_questions(out))
    model = Qwen2(tok.n_tokens) if init is None else load_model_dir(f"{out}/{init}")
    opt = make_opt(model, lr, 0.1)
    T, B = a.base_seq, a.base_batch
    stream = []
    t0 = time.time()
    for step in range(steps):
        rows = []
        for _ in range(B):
            while len(stream) < T + 1:
                stream.extend(tok.encode(doc_fn(g)))
            rows.append(stream[:T + 1])
            stream = stream[T + 1:]
        ids = torch.tensor(rows)
        for pg in opt.param_groups:
            pg["lr"] = lr_at(step, steps, lr, warmup)
        loss = lm_loss(model, ids, torch.ones_like(ids, dtype=torch.float32))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            log(name, f"step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    save_model_dir(model, tok, d)


def stage_base(out, tok, a):
    pretrain(out, tok, a, "base_phase1", None, a.base_steps, a.base_lr, 100, 0, 11, base_doc)
    pretrain(out, tok, a, "base", "base_phase1", a.base2_steps, a.base2_lr, 20, 1, 1, base_doc_phase2)


# ---- supervised fine-tune (SFT plain format / instruct chat format) ----------------------------
def finetune(out, tok, name, a, steps, lr, seed, make_example):
    d = f"{out}/{name}"
    if os.path.exists(f"{d}/model.safetensors"):
        return
    torch.manual_seed(seed)
    g = Gen(seed, test_questions(out))
    model = load_model_dir(f"{out}/base")
    opt = make_opt(model, lr, 0.0)
    pad = tok.special_ids["<|endoftext|>"]
    t0 = time.time()
    for step in range(steps):
        seqs, masks = [], []
        for _ in range(a.ft_batch):
            prompt, comp = make_example(g)
            p_ids = tok.encode(prompt)
            full = tok.encode(prompt + comp)
            assert full[:len(p_ids)] == p_ids
            seqs.append(full)
            masks.append([0] * len(p_ids) + [1] * (len(full) - len(p_ids)))
        ids, lm = pad_batch(seqs, masks, pad)
        for pg in opt.param_groups:
            pg["lr"] = lr_at(step, steps, lr, 20)
        loss = lm_loss(model, ids, lm)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 25 == 0 or step == steps - 1:
            log(name, f"step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
    save_model_dir(model, tok, d)


def stage_sft(out, tok, a):
    finetune(out, tok, "sft", a, a.sft_steps, a.sft_lr, 21, lambda g: teacher_plain(g, 2, 6))


def stage_instruct(out, tok, a):
    finetune(out, tok, "instruct", a, a.instruct_steps, a.instruct_lr, 31, teacher_chat)


# ---- stage: GRPO -----------------------------------------------------------------------------
def seq_logprobs(model, ids, start):
    """log p of ids[:, t] for t >= 1; returns (B, L-1)."""
    logits = model(ids[:, :-1])
    lp = torch.log_softmax(logits.float(), -1)
    return lp.gather(-1, ids[:, 1:, None])[..., 0]


def stage_grpo(out, tok, a):
    d = f"{out}/grpo"
    if os.path.exists(f"{d}/model.safetensors"):
        return
    torch.manual_seed(41)
    g = Gen(41, test_questions(out))
    gen = torch.Generator().manual_seed(41)
    policy = load_model_dir(f"{out}/sft")   # bf16-rounded SFT weights, exactly the shipped ones
    ref = load_model_dir(f"{out}/sft")
    for p in ref.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=a.grpo_lr, betas=(0.9, 0.99), weight_decay=0.0)
    pad = tok.special_ids["<|endoftext|>"]
    stops = [tok.special_ids["<|endoftext|>"], tok.special_ids["<|im_end|>"]]
    G = a.grpo_group
    t0 = time.time()
    hist = []
    for step in range(a.grpo_steps):
        probs = [g.problem() for _ in range(a.grpo_prompts)]
        prompts = [tok.encode(task.plain_prompt(p["question"])) for p in probs]
        flat = [pp for pp in prompts for _ in range(G)]
        policy.eval()
        comps = generate(policy, flat, a.grpo_max_new, stops, pad, temperature=1.0, gen=gen)
        rewards = torch.tensor([1.0 if task.is_correct(tok.decode(c), task.gold(probs[i // G])) else 0.0
                                for i, c in enumerate(comps)])
        r = rewards.view(-1, G)
        adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).view(-1)
        hist.append(rewards.mean().item())
        seqs = [p + c for p, c in zip(flat, comps)]
        masks = [[0] * len(p) + [1] * len(c) for p, c in zip(flat, comps)]
        ids, lm = pad_batch(seqs, masks, pad)
        w = lm[:, 1:]
        with torch.no_grad():
            ref_lp = seq_logprobs(ref, ids, 0)
        policy.train()
        lp = seq_logprobs(policy, ids, 0)
        ratio = torch.exp(lp - lp.detach())
        dlt = ref_lp - lp
        kl = torch.exp(dlt) - dlt - 1
        per_tok = -(ratio * adv[:, None]) + a.grpo_beta * kl
        loss = ((per_tok * w).sum(1) / w.sum(1).clamp(min=1)).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        if step % 10 == 0 or step == a.grpo_steps - 1:
            recent = sum(hist[-10:]) / len(hist[-10:])
            klm = ((kl * w).sum() / w.sum()).item()
            log("grpo", f"step {step} reward(last10) {recent:.3f} kl {klm:.4f} ({time.time() - t0:.0f}s)")
        if a.grpo_save_every and (step + 1) % a.grpo_save_every == 0 and step + 1 < a.grpo_steps:
            save_model_dir(policy, tok, f"{out}/grpo_step{step + 1}")
    save_model_dir(policy, tok, d)
    with open(f"{out}/grpo_reward_curve.json", "w") as f:
        json.dump([round(x, 4) for x in hist], f)


# ---- driver ----------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data/toy")
    ap.add_argument("--stage", default="all", choices=["all", "data", "tokenizer", "base", "sft", "instruct", "grpo"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--base-steps", type=int, default=800)
    ap.add_argument("--base-batch", type=int, default=32)
    ap.add_argument("--base-seq", type=int, default=128)
    ap.add_argument("--base-lr", type=float, default=2e-3)
    ap.add_argument("--base2-steps", type=int, default=600)
    ap.add_argument("--base2-lr", type=float, default=1e-3)
    ap.add_argument("--ft-batch", type=int, default=32)
    ap.add_argument("--sft-steps", type=int, default=80)
    ap.add_argument("--sft-lr", type=float, default=3e-4)
    ap.add_argument("--instruct-steps", type=int, default=120)
    ap.add_argument("--instruct-lr", type=float, default=3e-4)
    ap.add_argument("--grpo-steps", type=int, default=120)
    ap.add_argument("--grpo-prompts", type=int, default=8)
    ap.add_argument("--grpo-group", type=int, default=8)
    ap.add_argument("--grpo-lr", type=float, default=1e-4)
    ap.add_argument("--grpo-beta", type=float, default=0.04)
    ap.add_argument("--grpo-max-new", type=int, default=96)
    ap.add_argument("--grpo-save-every", type=int, default=0, help="also save grpo_stepN/ snapshots")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    stage_data(a.out)
    if a.stage == "data":
        return
    tok = stage_tokenizer(a.out)
    if a.stage == "all":
        stage_base(a.out, tok, a)
        # SFT -> GRPO and instruct are independent: run them as two 1-thread processes.
        argv = [sys.executable, os.path.abspath(__file__)] + [x for x in sys.argv[1:]]
        inst = subprocess.Popen(argv + ["--stage", "instruct"])
        sub = subprocess.run(argv + ["--stage", "sft"])
        sub2 = subprocess.run(argv + ["--stage", "grpo"]) if sub.returncode == 0 else sub
        if inst.wait() != 0 or sub2.returncode != 0:
            sys.exit("a stage failed")
        return
    {"base": stage_base, "sft": stage_sft, "instruct": stage_instruct, "grpo": stage_grpo}[a.stage](a.out, tok, a) \
        if a.stage != "tokenizer" else None


if __name__ == "__main__":
    main()
