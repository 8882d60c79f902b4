"""Training-step time of PyTorch + peft against this project's candle training step, measured in
one run on the same machine (issue 13). It runs the Rust benchmark binary
(`examples/step_time.rs`) first, then the same step in PyTorch, and prints both and the ratio
as a markdown table.

The step is the same work on both sides: MiniLM (all-MiniLM-L6-v2, the pinned checkpoint), one
fixed batch of BATCH examples x LEN tokens with every token attended, mean pooling, a linear
head over 3 labels, cross-entropy, backward and one AdamW update. Dropout as in the Rust
defaults: 0.1 on the adapter input (peft's lora_dropout), none in the encoder (BERT's hidden and
attention dropout set to 0, as TrainConfig's defaults). Methods:

    lora  peft LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=[query, value])
    hora  the HoRA generator of crates/finetune/src/adapters/hora.rs in PyTorch (hora_torch.py
          beside this file; no peft class exists): per layer a shared A-seed (r x in), per-head B-seeds
          (H x d_h x r), maps G_A (r x r) and G_B (d_h x d_h) for query and value, tanh,
          ΔW = (α/r)·B A added to the frozen projection, dropout on the adapter input
    full  every encoder weight trains (encoder lr 5e-5, head 1e-3)

    python step_time.py --model-dir DIR --rust-bin target/release/examples/step_time \
        [--methods lora,hora,full] [--steps 10] [--warmup 2] [--threads 2]

Pinned in requirements.txt beside this file (torch 2.15.0, transformers 5.24.0, peft 0.21.2).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import BertConfig, BertModel  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hora_torch  # noqa: E402

hf_logging.set_verbosity_error()

RANK, ALPHA, DROPOUT, LR, FULL_LR, WD = 8, 16.0, 0.1, 1e-3, 5e-5, 0.01


def encoder(model_dir):
    cfg = BertConfig.from_pretrained(model_dir)
    cfg.hidden_dropout_prob = 0.0
    cfg.attention_probs_dropout_prob = 0.0
    return BertModel.from_pretrained(model_dir, config=cfg, add_pooling_layer=False)


def build(method, model_dir):
    bert = encoder(model_dir)
    head = torch.nn.Linear(bert.config.hidden_size, 3)
    if method == "lora":
        cfg = LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=DROPOUT,
                         target_modules=["query", "value"])
        bert = get_peft_model(bert, cfg)
        params = [{"params": [p for p in bert.parameters() if p.requires_grad] + list(head.parameters()), "lr": LR}]
    elif method == "hora":
        layers = hora_torch.attach(bert, RANK, ALPHA, DROPOUT)
        params = [{"params": list(layers.parameters()) + list(head.parameters()), "lr": LR}]
    elif method == "full":
        params = [{"params": list(bert.parameters()), "lr": FULL_LR},
                  {"params": list(head.parameters()), "lr": LR}]
    else:
        raise SystemExit(f"unknown method {method}")
    bert.train()
    trainable = sum(p.numel() for g in params for p in g["params"])
    return bert, head, torch.optim.AdamW(params, weight_decay=WD), trainable


def time_torch(method, a):
    torch.manual_seed(0)
    bert, head, opt, trainable = build(method, a.model_dir)
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(1000, 30000, (a.batch, a.len), generator=g)
    ids[:, 0] = 101
    mask = torch.ones(a.batch, a.len, dtype=torch.long)
    labels = torch.arange(a.batch) % 3
    times = []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        hidden = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        loss = torch.nn.functional.cross_entropy(head(pooled), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    return {"method": method, "trainable_params": trainable, "median_s": statistics.median(times),
            "mean_s": statistics.fmean(times), "min_s": min(times)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True)
    p.add_argument("--rust-bin", required=True)
    p.add_argument("--methods", default="lora,hora,full")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--len", type=int, default=48)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = p.parse_args()
    methods = a.methods.split(",")
    torch.set_num_threads(a.threads)
    env = dict(os.environ, BATCH=str(a.batch), LEN=str(a.len), STEPS=str(a.steps),
               WARMUP=str(a.warmup), RAYON_NUM_THREADS=str(a.threads))
    out = subprocess.run([a.rust_bin, *methods], env=env, check=True, capture_output=True, text=True)
    rust = {r["method"]: r for r in map(json.loads, out.stdout.splitlines())}
    torch_rows = {m: time_torch(m, a) for m in methods}
    print(f"batch {a.batch}, length {a.len}, {a.steps} timed steps after {a.warmup}, "
          f"{a.threads} threads; torch {torch.__version__}; rust device {rust[methods[0]]['device']}")
    print("| method | trainable params (Rust / PyTorch) | PyTorch s/step | Rust s/step | Rust / PyTorch |")
    print("|---|---|---:|---:|---:|")
    for m in methods:
        r, t = rust[m], torch_rows[m]
        print(f"| {m} | {r['trainable_params']} / {t['trainable_params']} | {t['median_s']:.3f} | "
              f"{r['median_s']:.3f} | {r['median_s'] / t['median_s']:.2f}× |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
