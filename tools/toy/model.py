"""Qwen2 decoder (exact HF transformers Qwen2 semantics) in plain torch, bf16 safetensors IO,
and batched KV-cache generation."""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_CFG = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                   num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=512)


def rms_norm(x, w, eps):
    xf = x.float()
    return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Qwen2(torch.nn.Module):
    def __init__(self, vocab_size, cfg=None):
        super().__init__()
        cfg = dict(DEFAULT_CFG, **(cfg or {}))
        self.cfg = cfg
        self.vocab_size = vocab_size
        d, f = cfg["hidden_size"], cfg["intermediate_size"]
        self.nh, self.nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        self.hd = d // self.nh
        self.eps = cfg["rms_norm_eps"]
        self.params = torch.nn.ParameterDict()
        P = self.params

        def new(name, *shape, std=0.02, ones=False):
            t = torch.ones(*shape) if ones else torch.randn(*shape) * std
            P[name.replace(".", "__")] = torch.nn.Parameter(t)

        new("model.embed_tokens.weight", vocab_size, d)
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            new(p + "self_attn.q_proj.weight", self.nh * self.hd, d)
            new(p + "self_attn.q_proj.bias", self.nh * self.hd, std=0.0)
            new(p + "self_attn.k_proj.weight", self.nkv * self.hd, d)
            new(p + "self_attn.k_proj.bias", self.nkv * self.hd, std=0.0)
            new(p + "self_attn.v_proj.weight", self.nkv * self.hd, d)
            new(p + "self_attn.v_proj.bias", self.nkv * self.hd, std=0.0)
            new(p + "self_attn.o_proj.weight", d, self.nh * self.hd, std=0.02 / math.sqrt(2 * cfg["num_hidden_layers"]))
            new(p + "mlp.gate_proj.weight", f, d)
            new(p + "mlp.up_proj.weight", f, d)
            new(p + "mlp.down_proj.weight", d, f, std=0.02 / math.sqrt(2 * cfg["num_hidden_layers"]))
            new(p + "input_layernorm.weight", d, ones=True)
            new(p + "post_attention_layernorm.weight", d, ones=True)
        new("model.norm.weight", d, ones=True)
        inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, self.hd, 2, dtype=torch.int64).float() / self.hd))
        self.register_buffer("inv_freq", inv, persistent=False)

    def p(self, name):
        return self.params[name.replace(".", "__")]

    def named_hf(self):
        return {k.replace("__", "."): v for k, v in self.params.items()}

    def rope(self, pos):
        freqs = pos.float()[..., None] * self.inv_freq  # (B,T,hd/2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos()[:, None], emb.sin()[:, None]  # (B,1,T,hd)

    def forward(self, ids, pos=None, key_mask=None, cache=None):
        """ids (B,T). pos (B,T) position ids. key_mask (B,S) 1 for real keys over the full key
        range (cache + new). cache: list of (k,v) per layer, extended in place if given."""
        B, T = ids.shape
        if pos is None:
            pos = torch.arange(T)[None].expand(B, T)
        cos, sin = self.rope(pos)
        x = F.embedding(ids, self.p("model.embed_tokens.weight"))
        past = cache[0][0].shape[2] if cache is not None and cache[0] is not None else 0
        S = past + T
        causal = torch.ones(T, S, dtype=torch.bool).tril(diagonal=past)
        mask = causal[None, None]
        if key_mask is not None:
            mask = mask & key_mask[:, None, None, :].bool()
        rep = self.nh // self.nkv
        for i in range(self.cfg["num_hidden_layers"]):
            pre = f"model.layers.{i}."
            h = rms_norm(x, self.p(pre + "input_layernorm.weight"), self.eps)
            q = F.linear(h, self.p(pre + "self_attn.q_proj.weight"), self.p(pre + "self_attn.q_proj.bias"))
            k = F.linear(h, self.p(pre + "self_attn.k_proj.weight"), self.p(pre + "self_attn.k_proj.bias"))
            v = F.linear(h, self.p(pre + "self_attn.v_proj.weight"), self.p(pre + "self_attn.v_proj.bias"))
            q = q.view(B, T, self.nh, self.hd).transpose(1, 2)
            k = k.view(B, T, self.nkv, self.hd).transpose(1, 2)
            v = v.view(B, T, self.nkv, self.hd).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if cache is not None:
                if cache[i] is not None:
                    k = torch.cat([cache[i][0], k], dim=2)
                    v = torch.cat([cache[i][1], v], dim=2)
                cache[i] = (k, v)
            kr = k.repeat_interleave(rep, dim=1)
            vr = v.repeat_interleave(rep, dim=1)
            att = (q @ kr.transpose(-1, -2)) / math.sqrt(self.hd)
            att = att.masked_fill(~mask, float("-inf"))
            att = torch.softmax(att.float(), dim=-1)
            att = torch.nan_to_num(att, nan=0.0)
            o = (att @ vr).transpose(1, 2).reshape(B, T, self.nh * self.hd)
            x = x + F.linear(o, self.p(pre + "self_attn.o_proj.weight"))
            h = rms_norm(x, self.p(pre + "post_attention_layernorm.weight"), self.eps)
            m = F.linear(F.silu(F.linear(h, self.p(pre + "mlp.gate_proj.weight"))) *
                         F.linear(h, self.p(pre + "mlp.up_proj.weight")), self.p(pre + "mlp.down_proj.weight"))
            x = x + m
        x = rms_norm(x, self.p("model.norm.weight"), self.eps)
        return x @ self.p("model.embed_tokens.weight").t()


# ---- bf16 + safetensors ---------------------------------------------------------------------
def f32_to_bf16_bits(a):
    """Round-to-nearest-even f32 -> bf16 bit patterns (uint16)."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(a)
    out = rounded.astype(np.uint16)
    out[nan] = 0x7FC0
    return out


def bf16_bits_to_f32(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def round_bf16(t):
    return torch.from_numpy(bf16_bits_to_f32(f32_to_bf16_bits(t.detach().cpu().numpy())).copy())


def save_safetensors(path, tensors):
    """tensors: name -> f32 numpy array; stored as BF16."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        bits = f32_to_bf16_bits(tensors[name])
        raw = bits.astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        if info["dtype"] == "BF16":
            out[name] = bf16_bits_to_f32(np.frombuffer(data[a:b], dtype="<u2")).reshape(info["shape"]).copy()
        elif info["dtype"] == "F32":
            out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(info["shape"]).copy()
        else:
            raise ValueError(f"{path}: {name}: unsupported dtype {info['dtype']}")
    return out


def save_model_dir(model, tok, d, extra_cfg=None):
    os.makedirs(d, exist_ok=True)
    c = model.cfg
    eos = tok.special_ids["<|im_end|>"]
    eot = tok.special_ids["<|endoftext|>"]
    config = {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": eot,
        "eos_token_id": eos, "hidden_act": "silu", "hidden_size": c["hidden_size"], "initializer_range": 0.02,
        "intermediate_size": c["intermediate_size"], "max_position_embeddings": c["max_position_embeddings"],
        "max_window_layers": c["num_hidden_layers"], "model_type": "qwen2",
        "num_attention_heads": c["num_attention_heads"], "num_hidden_layers": c["num_hidden_layers"],
        "num_key_value_heads": c["num_key_value_heads"], "rms_norm_eps": c["rms_norm_eps"],
        "rope_theta": c["rope_theta"], "sliding_window": c["max_position_embeddings"],
        "tie_word_embeddings": True, "torch_dtype": "bfloat16", "transformers_version": "4.43.1",
        "use_cache": True, "use_sliding_window": False, "vocab_size": model.vocab_size}
    if extra_cfg:
        config.update(extra_cfg)
    with open(f"{d}/config.json", "w") as f:
        json.dump(config, f, indent=2)
    with open(f"{d}/generation_config.json", "w") as f:
        json.dump({"bos_token_id": eot, "eos_token_id": [eos, eot], "do_sample": False}, f, indent=2)
    save_safetensors(f"{d}/model.safetensors", {k: v.detach().numpy() for k, v in model.named_hf().items()})
    tok.save(d)


def load_model_dir(d):
    with open(f"{d}/config.json") as f:
        c = json.load(f)
    cfg = {k: c[k] for k in DEFAULT_CFG}
    m = Qwen2(c["vocab_size"], cfg)
    load_weights(m, load_safetensors(f"{d}/model.safetensors"))
    return m


def load_weights(m, tensors):
    with torch.no_grad():
        for k, v in m.named_hf().items():
            v.copy_(torch.from_numpy(np.asarray(tensors[k], dtype=np.float32)))


# ---- generation -----------------------------------------------------------------------------
@torch.no_grad()
def generate(model, prompts, max_new, stop_ids, pad_id, temperature=0.0, gen=None):
    """Left-padded batched generation with KV cache. Returns list of generated id lists
    (including the stop token if produced)."""
    B = len(prompts)
    L = max(len(p) for p in prompts)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    km = torch.zeros(B, L, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, L - len(p):] = torch.tensor(p)
        km[b, L - len(p):] = 1
    pos = (km.cumsum(1) - 1).clamp(min=0)
    cache = [None] * model.cfg["num_hidden_layers"]
    logits = model(ids, pos=pos, key_mask=km, cache=cache)[:, -1]
    nxt_pos = pos[:, -1] + 1
    out = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool)
    stop = torch.tensor(stop_ids)
    for _ in range(max_new):
        if temperature == 0.0:
            tok = logits.argmax(-1)
        else:
            probs = torch.softmax(logits / temperature, -1)
            tok = torch.multinomial(probs, 1, generator=gen)[:, 0]
        for b in range(B):
            if not done[b]:
                out[b].append(int(tok[b]))
        done |= torch.isin(tok, stop)
        if bool(done.all()):
            break
        km = torch.cat([km, torch.ones(B, 1, dtype=torch.long)], 1)
        logits = model(tok[:, None], pos=nxt_pos[:, None], key_mask=km, cache=cache)[:, -1]
        nxt_pos = nxt_pos + 1
    return out
