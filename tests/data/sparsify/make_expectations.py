#!/usr/bin/python3
"""Writes the tiny f32 models, mergekit configs and expected merges of the sparsifying
task-arithmetic tests (tests/arith/sparsify_test.cpp).

The expectations come from an independent numpy implementation written from mergekit's
documented semantics (merge_methods/generalized_task_arithmetic.py, sparsify.py): per-model
sparsification of delta_i = model_i - base (magnitude: top int(density*n) by |delta|;
magnitude_outliers: drop the top int(gamma*n) then keep int(density*n)), optional L1 rescale
to the original delta's norm, weighting, TIES sign consensus by the sum of the weighted
deltas, normalize by the (agreeing) weights' sum, lambda, base + result.
Magnitude ties are ranked by element index (rvec's documented order).

Run from this directory: python3 make_expectations.py
"""
import json
import os
import struct

import numpy as np
import yaml

TENSORS = {  # name -> shape
    "model.layers.0.mlp.down_proj.weight": (8, 16),
    "model.layers.1.self_attn.q_proj.weight": (12, 16),
    "model.norm.weight": (64,),
}
CONFIG = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "tie_word_embeddings": True,
          "num_hidden_layers": 2, "torch_dtype": "float32"}


def write_model(d, tensors):
    os.makedirs(d, exist_ok=True)
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(CONFIG, f)


def desc_order(a):
    """Indices by |a| descending, equal magnitudes by index ascending."""
    a = a.ravel()
    return np.lexsort((np.arange(a.size), -np.abs(a)))


def rescale_l1(t, masked):
    before, after = np.abs(t).sum(dtype=np.float64), np.abs(masked).sum(dtype=np.float64)
    if before < 1e-7 or after < 1e-7:
        return masked
    return masked * (before / after)


def keep_ranks(t, lo, hi, rescale):
    mask = np.zeros(t.size)
    mask[desc_order(t)[lo:hi]] = 1
    masked = t.astype(np.float64) * mask.reshape(t.shape)
    return rescale_l1(t.astype(np.float64), masked) if rescale else masked


def magnitude(t, density, rescale):
    if density >= 1:
        return t.astype(np.float64)
    k = int(density * t.size)
    assert k > 0
    return keep_ranks(t, 0, k, rescale)


def outliers(t, density, gamma, rescale):
    if density >= 1:
        return t.astype(np.float64)
    n = t.size
    target, top = int(density * n), int(gamma * n)
    bot = n - target - top
    if bot < 0:
        top += bot
    return keep_ranks(t, top, top + target, rescale)


METHODS = {  # name: (consensus, sparsification, normalize default, rescale default)
    "ties": (True, "magnitude", True, False),
    "breadcrumbs": (False, "outliers", False, False),
    "breadcrumbs_ties": (True, "outliers", False, False),
    "task_arithmetic": (False, None, False, False),
}


def param(spec, key, tensor, default=None):
    """Scalar, or a list of {filter, value} (first match); gradients are not used here."""
    v = spec.get(key, default)
    if isinstance(v, list):
        for e in v:
            f = e.get("filter")
            if f is None or f == "*" or f in tensor:
                return e["value"]
        return default
    return v


def merge(cfg, models):
    consensus, sp, norm_default, rescale_default = METHODS[cfg["merge_method"]]
    g = cfg.get("parameters", {}) or {}
    base = models[cfg["base_model"]]
    out = {}
    for name in TENSORS:
        b = base[name]
        lam = param(g, "lambda", name, 1.0)
        normalize = param(g, "normalize", name, norm_default)
        rescale = param(g, "rescale", name, rescale_default)
        wds, ws = [], []
        for m in cfg["models"]:
            if m["model"] == cfg["base_model"]:
                continue
            p = dict(g)
            p.update(m.get("parameters", {}) or {})
            w = param(p, "weight", name)
            dens = param(p, "density", name, 1.0)
            delta = (models[m["model"]][name] - b).astype(np.float32)  # f32, as mergekit's float32 compute
            if sp == "magnitude":
                d = magnitude(delta, dens, rescale)
            elif sp == "outliers":
                d = outliers(delta, dens, param(p, "gamma", name, 0.01), rescale)
            else:
                d = delta.astype(np.float64)
            wds.append(d * w)
            ws.append(np.full(d.shape, w))
        wd, w = np.stack(wds), np.stack(ws)
        if consensus:
            majority = np.where(wd.sum(axis=0) >= 0, 1.0, -1.0)
            mask = np.sign(wd) == majority
            mixed = (wd * mask).sum(axis=0)
            div = (w * mask).sum(axis=0)
            div[div == 0] = 1
        else:
            mixed = wd.sum(axis=0)
            div = w.sum(axis=0)
            div[np.abs(div) < 1e-8] = 1
        if normalize:
            mixed = mixed / div
        mixed = mixed * lam
        out[name] = (b.astype(np.float64) + mixed).astype(np.float32)
    return out


CONFIGS = {
    "ties": {"merge_method": "ties", "base_model": "base",
             "models": [{"model": "base"},
                        {"model": "m1", "parameters": {"weight": 1.0, "density": 0.5}},
                        {"model": "m2", "parameters": {"weight": 0.5, "density": 0.3}},
                        {"model": "m3", "parameters": {"weight": 0.75, "density": 0.7}}]},
    "ties_rescale_lambda": {"merge_method": "ties", "base_model": "base",
                            "parameters": {"normalize": False, "rescale": True, "lambda": 0.8,
                                           "density": [{"filter": "mlp", "value": 0.25}, {"value": 0.6}]},
                            "models": [{"model": "m1", "parameters": {"weight": 1.0}},
                                       {"model": "m2", "parameters": {"weight": -0.5}}]},
    "breadcrumbs": {"merge_method": "breadcrumbs", "base_model": "base",
                    "models": [{"model": "m1", "parameters": {"weight": 1.0, "density": 0.4, "gamma": 0.05}},
                               {"model": "m2", "parameters": {"weight": 0.5, "density": 0.9, "gamma": 0.2}}]},
    "breadcrumbs_ties": {"merge_method": "breadcrumbs_ties", "base_model": "base",
                         "parameters": {"normalize": True},
                         "models": [{"model": "m1", "parameters": {"weight": 1.0, "density": 0.6, "gamma": 0.02}},
                                    {"model": "m2", "parameters": {"weight": 0.5, "density": 0.5, "gamma": 0.1}},
                                    {"model": "m3", "parameters": {"weight": 0.25, "density": 0.8}}]},
}


def main():
    rng = np.random.default_rng(20261204)
    q = 2.0 ** -10  # quantised values: exact f32 differences and many equal magnitudes
    models = {"base": {n: (np.round(rng.normal(0, 0.02, s) / q) * q).astype(np.float32) for n, s in TENSORS.items()}}
    for m in ("m1", "m2", "m3"):
        models[m] = {n: (models["base"][n] + rng.integers(-12, 13, s) * q).astype(np.float32)
                     for n, s in TENSORS.items()}
    for m, ts in models.items():
        write_model(m, ts)
    for name, cfg in CONFIGS.items():
        with open(f"{name}.yaml", "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        write_model(os.path.join("expected", name), merge(cfg, models))


if __name__ == "__main__":
    main()
