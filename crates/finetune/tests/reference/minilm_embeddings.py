"""Independent reference for tests/minilm.rs: a pure-numpy forward pass of all-MiniLM-L6-v2
(BERT, post-norm, exact-erf GELU) with mean pooling, tokenised by the Python `tokenizers`
package from the same tokenizer.json. No torch, no candle.

    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install numpy safetensors tokenizers
    /tmp/refvenv/bin/python crates/finetune/tests/reference/minilm_embeddings.py assets/all-MiniLM-L6-v2

Run with numpy 2.4.6, safetensors 0.8.0, tokenizers 0.23.3 (float64 arithmetic on the f32 weights).
"""
import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SENTENCES = [
    "I love how quiet the new electric cars are.",
    "self-driving cars just seem lazy and a waste of money",
    "The meeting is at 3pm.",
]


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


erf = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def embed(model_dir, text, max_len=128):
    cfg = json.load(open(f"{model_dir}/config.json"))
    w = {k: v.astype(np.float64) for k, v in load_file(f"{model_dir}/model.safetensors").items()}
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(max_len)
    ids = tok.encode(text).ids
    t, h, nh = len(ids), cfg["hidden_size"], cfg["num_attention_heads"]
    dh, eps = h // nh, cfg["layer_norm_eps"]
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:t] \
        + w["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        lin = lambda name, z: z @ w[p + name + ".weight"].T + w[p + name + ".bias"]
        q = lin("attention.self.query", x).reshape(t, nh, dh).transpose(1, 0, 2)
        k = lin("attention.self.key", x).reshape(t, nh, dh).transpose(1, 0, 2)
        v = lin("attention.self.value", x).reshape(t, nh, dh).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(dh)
        s = np.exp(s - s.max(-1, keepdims=True))
        a = (s / s.sum(-1, keepdims=True)) @ v
        a = a.transpose(1, 0, 2).reshape(t, h)
        x = layer_norm(lin("attention.output.dense", a) + x, w[p + "attention.output.LayerNorm.weight"],
                       w[p + "attention.output.LayerNorm.bias"], eps)
        ff = lin("output.dense", gelu(lin("intermediate.dense", x)))
        x = layer_norm(ff + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    return ids, x.mean(0)


if __name__ == "__main__":
    model_dir = sys.argv[1] if len(sys.argv) > 1 else "assets/all-MiniLM-L6-v2"
    for text in SENTENCES:
        ids, e = embed(model_dir, text)
        print(text)
        print("  ids", ids)
        print("  first8", [round(float(v), 6) for v in e[:8]])
        print("  norm", round(float(np.linalg.norm(e)), 6), "sum", round(float(e.sum()), 6))
