#!/usr/bin/env python3
"""Generates tests/data/eval/python_random.json: reference draws of CPython's `random`
module that rvec's eval/pyrandom.h must reproduce bit for bit. Run once; output committed."""
import json
import random
import sys

out = {"python": sys.version.split()[0], "cases": []}
for seed in [0, 1, 1234, 42, 2**32 + 5, 2**70 + 12345, -7]:
    r = random.Random(seed)
    case = {"seed": str(seed)}
    case["getrandbits32"] = [r.getrandbits(32) for _ in range(5)]
    case["getrandbits64"] = [r.getrandbits(64) for _ in range(3)]
    case["getrandbits100"] = [str(r.getrandbits(100)) for _ in range(2)]
    case["random"] = [r.random() for _ in range(3)]
    case["randrange"] = [[n, r.randrange(n)] for n in [1, 2, 3, 7, 10, 100, 7473, 2**31 + 11, 2**40 + 3]]
    # lm-eval's few-shot draw: consecutive sample(fewshot_docs, k) calls from one generator
    case["sample_7473_5"] = [r.sample(range(7473), 5) for _ in range(4)]
    case["sample_7473_6"] = [r.sample(range(7473), 6) for _ in range(2)]
    case["sample_40_6"] = [r.sample(range(40), 6) for _ in range(3)]     # pool-based (n <= setsize)
    case["sample_10_10"] = r.sample(range(10), 10)
    case["sample_1319_3"] = r.sample(range(1319), 3)
    case["sample_5_0"] = r.sample(range(5), 0)
    lst = list(range(12))
    r.shuffle(lst)
    case["shuffle_12"] = lst
    lst = list(range(4))
    r.shuffle(lst)
    case["shuffle_4"] = lst
    out["cases"].append(case)
print(json.dumps(out, indent=1))
