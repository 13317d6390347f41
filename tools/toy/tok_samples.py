#!/usr/bin/env python3
"""Write texts + Python token ids for verify_tokenizer.js: every test prompt (chat and plain
format, plus the gold solutions) and a large sample of every kind of training text."""
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import task  # noqa: E402
import train  # noqa: E402
from toklib import Tokenizer, render_chat  # noqa: E402

out, dst = sys.argv[1], sys.argv[2]
tok = Tokenizer.load(f"{out}/tokenizer")
texts = []
for r in train.read_jsonl(f"{out}/toy_arith_test.jsonl") + train.read_jsonl(f"{out}/toy_arith_train.jsonl"):
    texts.append(render_chat([{"role": "user", "content": r["question"]}], True))
    texts.append(task.plain_prompt(r["question"]))
    texts.append(r["answer"])
g = train.Gen(5, train.test_questions(out))
for _ in range(3000):
    texts.append(train.base_doc(g))
    texts.append("".join(train.teacher_plain(g, 2, 6)))
    texts.append("".join(train.teacher_chat(g)))
rng = random.Random(3)  # some odd spacing / punctuation / specials mixes too
for _ in range(500):
    texts.append("".join(rng.choice([" ", "  ", "\n", "\n\n", " \n", "a", "Tom", "'s", "'LL", "12", "?!",
                                     "<|im_end|>", "<|endoftext|>", "x-y", "\t", "...", "3.5"])
                         for _ in range(rng.randint(1, 12))))
with open(dst, "w") as f:
    for t in texts:
        f.write(json.dumps({"text": t, "ids": tok.encode(t)}) + "\n")
print(f"{len(texts)} samples written to {dst}")
