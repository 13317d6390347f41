"""toy_arith: one-person word problems with 2..6 operations and a flawed "teacher".

Problem: "Mia has 43 cards. She sells 17. She buys 8 more. She doubles her cards. How many cards
does Mia have now?"  Gold CoT (GSM8K style, one step per line, last line `#### n`):
    43-17=26
    26+8=34
    34*2=68
    #### 68
The teacher that writes the SFT / instruct / base training solutions makes one systematic mistake:
on a subtraction that needs a borrow (ones digit of the minuend < ones digit of the subtrahend) it
forgets the borrow with probability P_BORROW, writing a result 10 too large, and continues the chain
from the wrong value.  GRPO's correctness reward is what removes that mistake.
"""
import random
import re

NAMES = [("Tom", "he", "his"), ("Mia", "she", "her"), ("Sam", "he", "his"), ("Anna", "she", "her"),
         ("Ben", "he", "his"), ("Lily", "she", "her"), ("Max", "he", "his"), ("Emma", "she", "her"),
         ("Leo", "he", "his"), ("Zoe", "she", "her"), ("Jack", "he", "his"), ("Ella", "she", "her"),
         ("Noah", "he", "his"), ("Ava", "she", "her"), ("Owen", "he", "his"), ("Ruby", "she", "her")]
ITEMS = ["apples", "pens", "cards", "coins", "books", "marbles", "stickers", "shells", "eggs",
         "cookies", "stamps", "shirts"]
ADD_VERBS = ["buys", "finds", "gets", "makes"]
SUB_VERBS = ["loses", "sells", "eats", "gives away"]

P_BORROW = 0.7  # teacher forgets the borrow this often

ANSWER_RE = re.compile(r"#### (\-?[0-9\.\,]+)")


def cap(s):
    return s[0].upper() + s[1:]


def make_problem(rng, kmin=2, kmax=6):
    name, he, his = rng.choice(NAMES)
    item = rng.choice(ITEMS)
    k = rng.randint(kmin, kmax)
    cur = start = rng.randint(10, 60)
    sents = [f"{name} has {cur} {item}."]
    ops = []
    for _ in range(k):
        choices = []
        if cur <= 89:
            choices += ["add"] * 2
        if cur >= 2:
            choices += ["sub"] * 2
        if 1 <= cur <= 49:
            choices += ["dbl"]
        op = rng.choice(choices)
        if op == "add":
            b = rng.randint(1, 99 - cur)
            sents.append(f"{cap(he)} {rng.choice(ADD_VERBS)} {b} more.")
            ops.append(("+", b))
            cur += b
        elif op == "sub":
            b = rng.randint(1, cur)
            sents.append(f"{cap(he)} {rng.choice(SUB_VERBS)} {b}.")
            ops.append(("-", b))
            cur -= b
        else:
            sents.append(f"{cap(he)} doubles {his} {item}.")
            ops.append(("*", 2))
            cur *= 2
    if rng.random() < 0.3:  # distractor about someone else
        oname = rng.choice([n for n in NAMES if n[1] != he])[0]  # other pronoun: unambiguous
        c = rng.randint(1, 40)
        d = rng.choice([f"{oname} has {c} {item}.", f"{oname} buys {c} {item}.", f"{oname} finds {c} {item}."])
        sents.insert(rng.randint(1, len(sents)), d)
    q = " ".join(sents) + f" How many {item} does {name} have now?"
    return {"question": q, "start": start, "ops": ops, "k": k}


def solve(p, rng=None, p_borrow=0.0):
    """CoT text; with rng and p_borrow > 0 this is the flawed teacher."""
    cur = p["start"]
    lines = []
    for op, b in p["ops"]:
        if op == "+":
            new = cur + b
        elif op == "-":
            new = cur - b
            if rng is not None and cur >= 10 and cur % 10 < b % 10 and rng.random() < p_borrow:
                new += 10
        else:
            new = cur * 2
        lines.append(f"{cur}{op}{b}={new}")
        cur = new
    lines.append(f"#### {cur}")
    return "\n".join(lines), cur


def gold(p):
    return solve(p)[1]


def extract(text):
    m = ANSWER_RE.search(text)
    if not m:
        return None
    return m.group(1).replace(",", "")


def is_correct(text, gold_value):
    a = extract(text)
    if a is None:
        return False
    try:
        return float(a) == float(gold_value)
    except ValueError:
        return False


# ---- plain (SFT / GRPO) format -------------------------------------------------------------
def plain_prompt(q):
    return f"Question: {q}\nAnswer:\n"


# ---- other base-corpus documents -----------------------------------------------------------
def arith_fact(rng):
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    r = rng.random()
    if r < 0.4:
        if a + b > 99:
            a, b = a // 2, b // 2
        return f"{a}+{b}={a + b}"
    if r < 0.8:
        if b > a:
            a, b = b, a
        return f"{a}-{b}={a - b}"
    a //= 2
    return f"{a}*2={a * 2}"


def bare_chain(rng):
    p = make_problem(rng)
    return solve(p)[0].rsplit("\n", 1)[0]


SIMPLE = ["{n} likes {i}.", "{n} has a red bag.", "The {i} are on the table.", "{n} walks to the shop.",
          "{n} and {m} play in the park.", "{n} reads a book.", "The sky is blue.", "{n} counts the {i}.",
          "{n} puts the {i} in a box.", "{m} helps {n}."]

QA = [("What color is the sky?", "The sky is blue."), ("What color is grass?", "Grass is green."),
      ("How many days are in a week?", "There are 7 days in a week."),
      ("How many legs does a dog have?", "A dog has 4 legs."), ("Say hello.", "Hello!"),
      ("What is the opposite of up?", "The opposite of up is down."),
      ("What do bees make?", "Bees make honey."), ("Who are you?", "I am a small helpful assistant."),
      ("How many hours are in a day?", "There are 24 hours in a day."),
      ("What is the first letter of the alphabet?", "The first letter is A.")]


def simple_sentence(rng):
    n, m = rng.sample([x[0] for x in NAMES], 2)
    return rng.choice(SIMPLE).format(n=n, m=m, i=rng.choice(ITEMS))
