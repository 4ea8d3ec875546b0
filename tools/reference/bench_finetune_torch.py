#!/usr/bin/env python3
"""PyTorch CPU fine-tuning throughput and memory: the baseline for `slm finetune`.

Loads a Hugging Face model directory with transformers (float32, no bf16/autocast), and runs
training steps

    opt.zero_grad(set_to_none=True)
    logits = model(input_ids=inputs).logits
    loss = F.cross_entropy(logits.view(-1, vocab), targets.view(-1))   # targets = inputs shifted
    loss.backward()
    opt.step()                      # torch.optim.AdamW over the trainable parameters

either on every parameter (`--mode full`) or on a PEFT LoRA adapter (`--mode lora`:
LoraConfig(r=--lora-rank, lora_alpha=--lora-alpha, lora_dropout=0, target_modules=--targets),
base frozen). Batches are random tokens (seeded), or windows of an slm token shard
(`--tokens FILE`, what `slm data prepare` writes), batch × (seq + 1) consecutive tokens per step.

`--warmup` steps (default 1) run first and are not timed; then `--steps` timed steps. Prints
one JSON object: tokens/s over the timed steps (batch × seq × steps / their time), the median,
best and worst step, the peak resident memory of the process (getrusage ru_maxrss, MiB), the
first and last loss, the parameter counts, the settings and the versions.

Usage (from the repository root):
    tools/reference/.venv/bin/python tools/reference/bench_finetune_torch.py \\
        --model HF_DIR --mode lora --batch 4 --seq 256 --steps 10 --threads 2 \\
        --lora-rank 8 --lora-alpha 16
"""

import argparse
import json
import resource
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers import AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import set_determinism  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SHARD_MAGIC = b"SLMTOKS\0"


def read_shard(path: Path) -> np.ndarray:
    """The tokens of an slm token shard (crates/slm-data/src/shards.rs)."""
    raw = path.read_bytes()
    if raw[:8] != SHARD_MAGIC:
        raise SystemExit(f"{path}: not an slm token shard (bad magic)")
    version, width = np.frombuffer(raw[8:16], dtype="<u4")
    count = int(np.frombuffer(raw[16:24], dtype="<u8")[0])
    if version != 1 or width not in (2, 4):
        raise SystemExit(f"{path}: shard version {version}, token width {width}: not read")
    dtype = "<u2" if width == 2 else "<u4"
    tokens = np.frombuffer(raw[24:], dtype=dtype)
    if len(tokens) != count:
        raise SystemExit(f"{path}: header says {count} tokens, the file holds {len(tokens)}")
    return tokens.astype(np.int64)


class Batches:
    """Batches of (inputs, targets), each [batch, seq]: random ids or shard windows."""

    def __init__(self, args, vocab: int):
        self.batch, self.seq = args.batch, args.seq
        self.tokens = read_shard(Path(args.tokens)) if args.tokens else None
        if self.tokens is not None:
            need = self.batch * (self.seq + 1)
            if len(self.tokens) < need:
                raise SystemExit(f"{args.tokens}: {len(self.tokens)} tokens, one batch needs {need}")
            if int(self.tokens.max()) >= vocab:
                raise SystemExit(f"{args.tokens}: token id {int(self.tokens.max())} >= vocab {vocab}")
        self.vocab = vocab
        self.g = torch.Generator().manual_seed(1)
        self.pos = 0

    def next(self):
        n = self.batch * (self.seq + 1)
        if self.tokens is None:
            seq = torch.randint(0, self.vocab, (self.batch, self.seq + 1), generator=self.g)
        else:
            if self.pos + n > len(self.tokens):
                self.pos = 0
            window = self.tokens[self.pos : self.pos + n]
            self.pos += n
            seq = torch.from_numpy(window.copy()).view(self.batch, self.seq + 1)
        return seq[:, :-1].contiguous(), seq[:, 1:].contiguous()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a Hugging Face model directory")
    ap.add_argument("--mode", choices=["full", "lora"], required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=16.0)
    ap.add_argument("--targets", nargs="+", default=TARGETS, help="LoRA target modules")
    ap.add_argument("--tokens", help="an slm token shard to draw batches from (default: random ids)")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    args = ap.parse_args()
    if args.steps < 1 or args.batch < 1 or args.seq < 1:
        ap.error("--steps, --batch and --seq must be at least 1")

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    set_determinism(0)
    torch.use_deterministic_algorithms(False)  # speed, as a user would run it
    torch.set_num_threads(args.threads)

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation=args.attn)
    vocab = model.config.vocab_size
    lora = None
    if args.mode == "lora":
        import peft
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=args.lora_rank,
            lora_alpha=args.lora_alpha,
            lora_dropout=0.0,
            target_modules=args.targets,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=args.lr, betas=(0.9, 0.95), weight_decay=args.weight_decay)
    batches = Batches(args, vocab)

    def step() -> float:
        inputs, targets = batches.next()
        opt.zero_grad(set_to_none=True)
        logits = model(input_ids=inputs).logits
        loss = F.cross_entropy(logits.view(-1, vocab), targets.view(-1))
        loss.backward()
        opt.step()
        return loss.item()

    losses = [step() for _ in range(args.warmup)]
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t0)

    tokens = args.batch * args.seq
    report = {
        "impl": "pytorch",
        "mode": args.mode,
        "model": str(args.model),
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in trainable),
        "batch": args.batch,
        "seq": args.seq,
        "threads": torch.get_num_threads(),
        "attn": args.attn,
        "data": args.tokens or "random",
        "warmup": args.warmup,
        "steps": args.steps,
        "tokens_per_s": round(tokens * args.steps / sum(times), 1),
        "median_step_s": round(statistics.median(times), 4),
        "tokens_per_s_best": round(tokens / min(times), 1),
        "tokens_per_s_worst": round(tokens / max(times), 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "loss_first": round(losses[0], 4),
        "loss_last": round(losses[-1], 4),
        "optimizer": {"name": "AdamW", "lr": args.lr, "betas": [0.9, 0.95], "weight_decay": args.weight_decay},
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    if lora is not None:
        report["lora"] = {"r": args.lora_rank, "alpha": args.lora_alpha, "targets": sorted(lora.target_modules)}
        report["peft"] = peft.__version__
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
