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

Evaluation is timed too: one batch of EVAL_BATCH examples forward only (PyTorch under
torch.inference_mode() with the model in eval mode; Rust as `train::predict` evaluates), logits
then the predicted class, reported as examples per second. Every length in --lens is measured,
Rust then PyTorch for each (so a drift of the machine falls on both sides alike), and one table
of all rows is printed with the CPU named.

    python step_time.py --model-dir DIR --rust-bin target/release/examples/step_time \
        [--methods lora,hora,full] [--lens 48,128] [--steps 10] [--warmup 2] [--threads 2]

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


def inputs(batch, length):
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(1000, 30000, (batch, length), generator=g)
    ids[:, 0] = 101
    return ids, torch.ones(batch, length, dtype=torch.long)


def pool(hidden, mask):
    m = mask.unsqueeze(-1).float()
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def time_torch_eval(method, a, length):
    torch.manual_seed(0)
    bert, head, _, trainable = build(method, a.model_dir)
    bert.eval()
    ids, mask = inputs(a.eval_batch, length)
    times = []
    with torch.inference_mode():
        for step in range(a.warmup + a.steps):
            t0 = time.perf_counter()
            hidden = bert(input_ids=ids, attention_mask=mask).last_hidden_state
            head(pool(hidden, mask)).argmax(-1).tolist()
            if step >= a.warmup:
                times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"method": method, "trainable_params": trainable, "median_s": med,
            "examples_per_s": a.eval_batch / med}


def time_torch(method, a, length):
    torch.manual_seed(0)
    bert, head, opt, trainable = build(method, a.model_dir)
    ids, mask = inputs(a.batch, length)
    labels = torch.arange(a.batch) % 3
    times = []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        hidden = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        loss = torch.nn.functional.cross_entropy(head(pool(hidden, mask)), labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    return {"method": method, "trainable_params": trainable, "median_s": statistics.median(times),
            "mean_s": statistics.fmean(times), "min_s": min(times)}


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def rust(a, methods, length, mode, batch):
    env = dict(os.environ, BATCH=str(batch), LEN=str(length), STEPS=str(a.steps),
               WARMUP=str(a.warmup), RAYON_NUM_THREADS=str(a.threads), MODE=mode)
    out = subprocess.run([a.rust_bin, *methods], env=env, check=True, capture_output=True,
                         text=True)
    return {r["method"]: r for r in map(json.loads, out.stdout.splitlines())}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True)
    p.add_argument("--rust-bin", required=True)
    p.add_argument("--methods", default="lora,hora,full")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--eval-batch", type=int, default=64)
    p.add_argument("--lens", default="48,128")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = p.parse_args()
    methods = a.methods.split(",")
    torch.set_num_threads(a.threads)
    rows = []
    device = None
    for length in map(int, a.lens.split(",")):
        r = rust(a, methods, length, "train", a.batch)
        t = {m: time_torch(m, a, length) for m in methods}
        device = r[methods[0]]["device"]
        for m in methods:
            rows.append((m, length, "train step", r[m]["trainable_params"],
                         t[m]["trainable_params"], t[m]["median_s"], r[m]["median_s"],
                         r[m]["median_s"] / t[m]["median_s"]))
        r = rust(a, methods, length, "eval", a.eval_batch)
        t = {m: time_torch_eval(m, a, length) for m in methods}
        for m in methods:
            # Time per example, so the ratio reads as the training rows do (below 1: Rust faster).
            rows.append((m, length, f"eval (batch {a.eval_batch})", r[m]["trainable_params"],
                         t[m]["trainable_params"], t[m]["median_s"], r[m]["median_s"],
                         r[m]["median_s"] / t[m]["median_s"]))
    print(f"{cpu_name()}, {a.threads} threads; training batch {a.batch}; {a.steps} timed steps "
          f"after {a.warmup}; torch {torch.__version__}; rust device {device}; synthetic ids, "
          "every token attended")
    print("| method | length | what | trainable params (Rust / PyTorch) | PyTorch s | Rust s | "
          "Rust / PyTorch |")
    print("|---|---:|---|---|---:|---:|---:|")
    for m, length, what, rp, tp, ts, rs, ratio in rows:
        print(f"| {m} | {length} | {what} | {rp} / {tp} | {ts:.3f} | {rs:.3f} | {ratio:.2f}× |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
