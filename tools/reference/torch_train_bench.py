#!/usr/bin/env python3
"""PyTorch CPU training-step throughput, the baseline `cargo bench -p slm-train` compares to.

Builds transformers' LlamaForCausalLM from a slm preset (same table as
crates/slm-model/src/presets.rs: tied embeddings, RoPE theta 1e4, RMSNorm eps 1e-5, no
biases), float32, default attention implementation (sdpa) unless --attn says otherwise, and
times full training steps on random tokens:

    opt.zero_grad(set_to_none=True)
    logits = model(input_ids).logits
    loss = F.cross_entropy(logits.view(-1, vocab), targets.view(-1))
    loss.backward()
    opt.step()                     # torch.optim.AdamW, PyTorch defaults for the CPU

after warm-up steps, with torch.set_num_threads(--threads). Prints one JSON line per preset:
tokens/s from the median step time, plus min/max.

Usage (from the repository root):
    tools/reference/.venv/bin/python tools/reference/torch_train_bench.py --preset 4m 15m \
        --batch 8 --seq 256 --threads 2 --steps 10 --warmup 3
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

# name: (dim, layers, heads, kv_heads, hidden, vocab, context) -- presets.rs
PRESETS = {
    "260k": (64, 5, 8, 4, 172, 512, 512),
    "1m": (128, 4, 4, 4, 352, 1024, 256),
    "4m": (256, 4, 8, 8, 704, 4096, 256),
    "15m": (288, 6, 6, 6, 768, 32000, 256),
    "42m": (512, 8, 8, 8, 1376, 32000, 1024),
    "110m": (768, 12, 12, 12, 2048, 32000, 1024),
}


def build(name: str, attn: str) -> LlamaForCausalLM:
    dim, layers, heads, kv, hidden, vocab, ctx = PRESETS[name]
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=dim,
        intermediate_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=dim // heads,
        max_position_embeddings=ctx,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
        hidden_act="silu",
    )
    cfg._attn_implementation = attn
    model = LlamaForCausalLM(cfg).float()
    model.train()
    return model


def bench(name: str, args) -> dict:
    torch.manual_seed(0)
    model = build(name, args.attn)
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(0, vocab, (args.batch, args.seq + 1), generator=g)
    inputs, targets = seq[:, :-1].contiguous(), seq[:, 1:].contiguous()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(input_ids=inputs).logits
        loss = F.cross_entropy(logits.view(-1, vocab), targets.view(-1))
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    tokens = args.batch * args.seq
    med = statistics.median(times)
    return {
        "impl": "pytorch",
        "preset": name,
        "params": sum(p.numel() for p in model.parameters()),
        "batch": args.batch,
        "seq": args.seq,
        "threads": torch.get_num_threads(),
        "attn": args.attn,
        "steps": args.steps,
        "median_step_s": round(med, 4),
        "tokens_per_s": round(tokens / med, 1),
        "tokens_per_s_best": round(tokens / min(times), 1),
        "tokens_per_s_worst": round(tokens / max(times), 1),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", nargs="+", default=["4m", "15m"], choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.preset:
        print(json.dumps(bench(name, args)), flush=True)


if __name__ == "__main__":
    main()
