#!/usr/bin/env python3
"""Writes a Qwen2 Hugging Face model directory (single model.safetensors, BF16/F16/F32) as a
GGUF v3 file for llama.cpp, so that llama.cpp can be timed on the same weights as rvec
(bench_llama_cpp.mjs). Matrices keep their dtype, 1-D tensors (norms, biases) become F32 as
llama.cpp's own converter does. Qwen2 uses the NEOX rotary layout, so q/k need no permutation.

Usage: to_gguf.py MODEL_DIR OUT.gguf
"""
import json
import struct
import sys
from pathlib import Path

from array import array

GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STR, GGUF_ARR, GGUF_U64 = 4, 5, 6, 7, 8, 9, 10
GGML = {"F32": 0, "F16": 1, "BF16": 30}
ALIGN = 32


def s(x: str) -> bytes:
    b = x.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv(key, typ, val) -> bytes:
    out = s(key) + struct.pack("<I", typ)
    if typ == GGUF_STR:
        return out + s(val)
    if typ == GGUF_ARR:
        etyp, items = val
        out += struct.pack("<IQ", etyp, len(items))
        if etyp == GGUF_STR:
            return out + b"".join(s(i) for i in items)
        return out + array({GGUF_I32: "i", GGUF_U32: "I"}[etyp], items).tobytes()  # little-endian host
    fmt = {GGUF_U32: "<I", GGUF_I32: "<i", GGUF_F32: "<f", GGUF_BOOL: "<?", GGUF_U64: "<Q"}[typ]
    return out + struct.pack(fmt, val)


def read_safetensors(path: Path):
    raw = path.read_bytes()
    (n,) = struct.unpack_from("<Q", raw, 0)
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = (info["dtype"], info["shape"], raw[base + a : base + b])
    return out


def to_f32(dtype: str, buf: bytes) -> bytes:
    if dtype == "F32":
        return buf
    if dtype == "BF16":
        return array("I", (u << 16 for u in array("H", buf))).tobytes()
    return struct.pack(f"<{len(buf) // 2}f", *struct.unpack(f"<{len(buf) // 2}e", buf))


def gguf_name(hf: str) -> str:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")  # model.layers.N.<module>...
    i, rest = parts[2], ".".join(parts[3:])
    table = {
        "input_layernorm.weight": "attn_norm.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.q_proj.bias": "attn_q.bias",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.k_proj.bias": "attn_k.bias",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.v_proj.bias": "attn_v.bias",
        "self_attn.o_proj.weight": "attn_output.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    if rest not in table:
        sys.exit(f"{hf}: no GGUF name for this tensor")
    return f"blk.{i}.{table[rest]}"


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: to_gguf.py MODEL_DIR OUT.gguf")
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (src / f).is_file():
            sys.exit(f"{src}: no {f} (a single-file Qwen2 model directory is needed)")
    cfg = json.loads((src / "config.json").read_text())
    if cfg.get("architectures", [""])[0] != "Qwen2ForCausalLM":
        sys.exit(f"{src}/config.json: only Qwen2ForCausalLM is converted")
    tensors = read_safetensors(src / "model.safetensors")
    tok = json.loads((src / "tokenizer.json").read_text())
    vocab_size = cfg["vocab_size"]
    tokens = ["[PAD%d]" % i for i in range(vocab_size)]
    types = [4] * vocab_size  # user-defined for padding ids
    for t, i in tok["model"]["vocab"].items():
        tokens[i], types[i] = t, 1
    for a in tok.get("added_tokens", []):
        tokens[a["id"]], types[a["id"]] = a["content"], 3 if a.get("special") else 4
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    eos = next((a["id"] for a in tok.get("added_tokens", []) if a["content"] == "<|endoftext|>"), 0)
    meta = [
        kv("general.architecture", GGUF_STR, "qwen2"),
        kv("general.name", GGUF_STR, src.name),
        kv("general.alignment", GGUF_U32, ALIGN),
        kv("qwen2.block_count", GGUF_U32, cfg["num_hidden_layers"]),
        kv("qwen2.context_length", GGUF_U32, cfg.get("max_position_embeddings", 32768)),
        kv("qwen2.embedding_length", GGUF_U32, cfg["hidden_size"]),
        kv("qwen2.feed_forward_length", GGUF_U32, cfg["intermediate_size"]),
        kv("qwen2.attention.head_count", GGUF_U32, cfg["num_attention_heads"]),
        kv("qwen2.attention.head_count_kv", GGUF_U32, cfg["num_key_value_heads"]),
        kv("qwen2.rope.freq_base", GGUF_F32, float(cfg.get("rope_theta", 10000.0))),
        kv("qwen2.attention.layer_norm_rms_epsilon", GGUF_F32, float(cfg["rms_norm_eps"])),
        kv("tokenizer.ggml.model", GGUF_STR, "gpt2"),
        kv("tokenizer.ggml.pre", GGUF_STR, "qwen2"),
        kv("tokenizer.ggml.tokens", GGUF_ARR, (GGUF_STR, tokens)),
        kv("tokenizer.ggml.token_type", GGUF_ARR, (GGUF_I32, types)),
        kv("tokenizer.ggml.merges", GGUF_ARR, (GGUF_STR, merges)),
        kv("tokenizer.ggml.eos_token_id", GGUF_U32, eos),
        kv("tokenizer.ggml.padding_token_id", GGUF_U32, eos),
        kv("tokenizer.ggml.bos_token_id", GGUF_U32, eos),
        kv("tokenizer.ggml.add_bos_token", GGUF_BOOL, False),
    ]
    infos, blobs, off = [], [], 0
    for hf, (dtype, shape, buf) in tensors.items():
        if dtype not in GGML:
            sys.exit(f"{hf}: dtype {dtype} not converted")
        if len(shape) == 1:
            buf, dtype = to_f32(dtype, buf), "F32"
        name = gguf_name(hf)
        dims = list(reversed(shape))  # GGUF lists the innermost dimension first
        infos.append(s(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                     + struct.pack("<IQ", GGML[dtype], off))
        pad = (-len(buf)) % ALIGN
        blobs.append(buf + b"\0" * pad)
        off += len(buf) + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(meta)) + b"".join(meta) + b"".join(infos)
    head += b"\0" * ((-len(head)) % ALIGN)
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(head)
        for b in blobs:
            f.write(b)
    tmp.rename(dst)
    print(f"{dst}: {len(infos)} tensors, {off / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
