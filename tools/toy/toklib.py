"""Small byte-level BPE tokenizer with Hugging Face `tokenizers` semantics (Qwen2 layout).

Training text is restricted to printable ASCII plus '\n', so the Qwen2 pre-tokenizer regex
(which uses \\p{L} / \\p{N}) is equivalent to the ASCII regex below; `check_ascii` enforces it.
Encoding applies merges by rank exactly like HF's BPE model (lowest rank first); the result is
verified against the Rust HF tokenizers (npm `@anush008/tokenizers`) by `verify_tokenizer.js`.
"""
import json
import re
from collections import Counter

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# ASCII transcription of QWEN2_PATTERN (valid because all text is ASCII, see check_ascii).
_ASCII_PATTERN = re.compile(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\nA-Za-z0-9]?[A-Za-z]+|[0-9]|"
                            r" ?[^\sA-Za-z0-9]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")

CHAT_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
                 "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
                 "{{ '<|im_start|>assistant\\n' }}{% endif %}")


def bytes_to_unicode():
    """GPT-2 / HF ByteLevel byte -> printable unicode char table (list order = id order here)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [(b, chr(c)) for b, c in zip(bs, cs)]


_B2U = dict(bytes_to_unicode())
_U2B = {u: b for b, u in _B2U.items()}


def check_ascii(text):
    for ch in text:
        if not (ch in "\t\n\r" or " " <= ch <= "~"):
            raise ValueError(f"non-ASCII/non-printable character {ch!r} in toy text: {text[:60]!r}")


def pretokenize(text):
    """Split(Qwen2 regex, Isolated) then ByteLevel(use_regex=false): list of byte-level words."""
    check_ascii(text)
    pieces = [m.group(0) for m in _ASCII_PATTERN.finditer(text)]
    assert "".join(pieces) == text
    return ["".join(_B2U[b] for b in p.encode("utf-8")) for p in pieces]


def render_chat(messages, add_generation_prompt):
    out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    if add_generation_prompt:
        out += "<|im_start|>assistant\n"
    return out


class Tokenizer:
    def __init__(self, merges):
        self.merges = [tuple(m) for m in merges]
        self.vocab = {}
        for _, u in bytes_to_unicode():
            self.vocab[u] = len(self.vocab)
        for a, b in self.merges:
            self.vocab[a + b] = len(self.vocab)
        self.ranks = {m: i for i, m in enumerate(self.merges)}
        self.special_ids = {s: len(self.vocab) + i for i, s in enumerate(SPECIALS)}
        self.id_to_str = {i: s for s, i in self.vocab.items()}
        self.id_to_str.update({i: s for s, i in self.special_ids.items()})
        self.n_tokens = len(self.vocab) + len(SPECIALS)
        self._cache = {}

    # ---- training -------------------------------------------------------------------------
    @staticmethod
    def train(texts, n_merges):
        words = Counter()
        for t in texts:
            for seg in _SPECIAL_RE.split(t):
                if seg and seg not in SPECIALS:
                    words.update(pretokenize(seg))
        seqs = {w: list(w) for w in words}
        merges = []
        for _ in range(n_merges):
            pairs = Counter()
            for w, f in words.items():
                s = seqs[w]
                for i in range(len(s) - 1):
                    pairs[(s[i], s[i + 1])] += f
            if not pairs:
                break
            best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[0]
            merges.append(best)
            for w in words:
                s = seqs[w]
                i, out = 0, []
                while i < len(s):
                    if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                        out.append(s[i] + s[i + 1])
                        i += 2
                    else:
                        out.append(s[i])
                        i += 1
                seqs[w] = out
        return Tokenizer(merges)

    # ---- encoding -------------------------------------------------------------------------
    def _bpe(self, word):
        if word in self._cache:
            return self._cache[word]
        s = list(word)
        while len(s) > 1:
            best, best_rank = None, None
            for i in range(len(s) - 1):
                r = self.ranks.get((s[i], s[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = (s[i], s[i + 1]), r
            if best is None:
                break
            i, out = 0, []
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            s = out
        ids = [self.vocab[p] for p in s]
        self._cache[word] = ids
        return ids

    def encode(self, text):
        ids = []
        for seg in _SPECIAL_RE.split(text):
            if not seg:
                continue
            if seg in self.special_ids:
                ids.append(self.special_ids[seg])
            else:
                for w in pretokenize(seg):
                    ids.extend(self._bpe(w))
        return ids

    def decode(self, ids, skip_special=True):
        out, buf = [], []
        for i in ids:
            s = self.id_to_str[i]
            if s in self.special_ids:
                if buf:
                    out.append(bytes(buf).decode("utf-8", "replace"))
                    buf = []
                if not skip_special:
                    out.append(s)
            else:
                buf.extend(_U2B[c] for c in s)
        if buf:
            out.append(bytes(buf).decode("utf-8", "replace"))
        return "".join(out)

    # ---- HF files -------------------------------------------------------------------------
    def tokenizer_json(self):
        added = [{"id": self.special_ids[s], "content": s, "single_word": False, "lstrip": False,
                  "rstrip": False, "normalized": False, "special": True} for s in SPECIALS]
        bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
        return {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": None,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated", "invert": False},
                dict(bl)]},
            "post_processor": dict(bl),
            "decoder": dict(bl),
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": False, "vocab": self.vocab,
                      "merges": [[a, b] for a, b in self.merges]},
        }

    def tokenizer_config(self):
        dec = {str(self.special_ids[s]): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "special": True} for s in SPECIALS}
        return {"add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": dec,
                "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
                "bos_token": None, "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
                "eos_token": "<|im_end|>", "errors": "replace", "model_max_length": 512,
                "pad_token": "<|endoftext|>", "split_special_tokens": False,
                "tokenizer_class": "Qwen2Tokenizer", "unk_token": None}

    def save(self, d):
        with open(f"{d}/tokenizer.json", "w") as f:
            json.dump(self.tokenizer_json(), f, ensure_ascii=False, indent=1)
        with open(f"{d}/tokenizer_config.json", "w") as f:
            json.dump(self.tokenizer_config(), f, indent=2)

    @staticmethod
    def load(d):
        with open(f"{d}/tokenizer.json") as f:
            t = json.load(f)
        return Tokenizer(t["model"]["merges"])
