#!/usr/bin/env python3
"""Generates tests/data/eval/expected_prompts.json: the exact contexts lm-evaluation-harness
0.4.x builds for a few documents of each task, written independently of rvec's C++ code from
lm-eval's documented rules (ContextSampler.get_context, Task.fewshot_context) with CPython's
`random`. Run once from the repo root; the output is committed."""
import json
import random

D = "data/"


def jl(p):
    return [json.loads(l) for l in open(D + p) if l.strip()]


def ctx(description, shots, text_fn, target_fn, doc, tdelim=" ", fdelim="\n\n"):
    s = description
    for ex in shots:
        t = target_fn(ex)
        s += text_fn(ex)
        if t != "":
            s += tdelim + t + fdelim
    return s + text_fn(doc)


def default_sampler(rnd, fewshot_docs, doc, n, same_split):
    k = n + 1 if same_split else n
    drawn = rnd.sample(fewshot_docs, k)
    return [x for x in drawn if x != doc][:n]


out = {}
# gsm8k: 5-shot from train, one Random(1234) for the task, docs in order.
test, train = jl("gsm8k/test.jsonl"), jl("gsm8k/train.jsonl")
rnd = random.Random(1234)
q = lambda d: "Question: " + d["question"] + "\nAnswer:"
a = lambda d: d["answer"]
for i in range(3):
    shots = default_sampler(rnd, train, test[i], 5, False)
    out[f"gsm8k/{i}"] = ctx("", shots, q, a, test[i])

# gsm8k_cot: the 8 fixed exemplars, target after ####.
ex = json.load(open(D + "gsm8k/gsm8k_cot_exemplars.json"))
cq = lambda d: "Q: " + d["question"] + "\nA:"
ct = lambda d: d["answer"].split("####")[-1].strip() if "answer" in d else d["target"]
out["gsm8k_cot/0"] = ctx("", ex, cq, ct, test[0])
out["gsm8k_cot_zeroshot/0"] = "Q: " + test[0]["question"] + "\nA: Let's think step by step."

# gsm_plus: few-shot from its own test split, n+1 drawn and the doc dropped.
gp = jl("adversarial/gsmplus_testmini_sample.jsonl")
rnd = random.Random(1234)
for i in range(3):
    shots = default_sampler(rnd, gp, gp[i], 5, True)
    out[f"gsm_plus/{i}"] = ctx("", shots, q, lambda d: d["solution"], gp[i])

# sciq: zero-shot multiple choice; continuations " " + choice.
sq = json.load(open(D + "sciq/test.json"))
d = sq[0]
out["sciq/0"] = d["support"].lstrip() + "\nQuestion: " + d["question"] + "\nAnswer:"
out["sciq/0/continuations"] = [" " + d[k] for k in ["distractor1", "distractor2", "distractor3", "correct_answer"]]


def bbh_prompt(sub):
    txt = open(D + f"bbh/cot-prompts/{sub}.txt").read()
    body = txt.split("\n-----\n", 1)[1]
    desc, rest = body.split("\n", 1)
    shots = []
    for block in rest.strip("\n").split("\n\nQ: "):
        block = block[3:] if block.startswith("Q: ") else block
        inp, tgt = block.split("\nA: Let's think step by step.", 1)
        shots.append({"input": inp, "target": tgt[1:]})
    return desc, shots


for sub in ["boolean_expressions", "sports_understanding", "date_understanding"]:
    desc, shots = bbh_prompt(sub)
    docs = json.load(open(D + f"bbh/tasks/{sub}.json"))["examples"]
    bt = lambda d: "Q: " + d["input"] + "\nA: Let's think step by step.\n"
    out[f"bbh_cot_fewshot_{sub}/0"] = ctx(desc + "\n\n", shots, bt, lambda d: d["target"], docs[0], tdelim="")
    out[f"bbh_zeroshot_{sub}/0"] = desc + "\n\n" + "Q: " + docs[0]["input"] + "\nA:"

he = jl("humaneval/HumanEval.jsonl")
out["humaneval/0"] = he[0]["prompt"]
out["humaneval_instruct/0"] = (
    "Write a solution to the following problem and make sure that it passes the tests:\n```python\n"
    + he[0]["prompt"] + "\n```\n" + " " + "Here is the completed function:\n```python\n" + he[0]["prompt"] + "\n")
print(json.dumps(out, indent=1, ensure_ascii=False))
