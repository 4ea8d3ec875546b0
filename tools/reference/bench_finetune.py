#!/usr/bin/env python3
"""Fine-tuning speed and memory, slm against PyTorch + transformers + peft, interleaved.

For each round, runs one process per configuration, alternating the two implementations:

    slm  full        slm --threads T bench train -m MODEL --batch B --seq S --json
    torch full       bench_finetune_torch.py --model HF_DIR --mode full
    slm  lora        ... --lora-rank R                 (alpha 2R, every linear)
    torch lora       ... --mode lora --lora-rank R --lora-alpha 2R
    slm  qlora q8_0  ... --lora-rank R --base-type q8_0
    slm  qlora q4_0  ... --lora-rank R --base-type q4_0
    slm  qlora q4_0 ckpt  ... --activation-checkpointing

Each process reports tokens/s (median step) and its peak resident memory (loading included),
so every configuration's memory is its own. PyTorch has no CPU QLoRA (bitsandbytes' 4-bit
layers need a GPU), so QLoRA is compared with slm's and PyTorch's full fine-tune.

Prints one JSON object (every run, the medians over rounds, and the ratios the issue's bars
name) and a table. The HF directory is what `slm export hf` writes from MODEL.

Usage (from the repository root, after `cargo build --release`):
    tools/reference/.venv/bin/python tools/reference/bench_finetune.py \\
        --model ../shared/data/models/SmolLM2-135M-Instruct.Q4_1.gguf --hf runs/smollm2-hf \\
        --rounds 2 --steps 5
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def cpu_flags() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            return " ".join(f for f in ("avx2", "avx512f", "avx512_vnni") if f in flags)
    return ""


def run_json(cmd) -> dict:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the model slm loads (GGUF, HF directory...)")
    ap.add_argument("--hf", required=True, help="the same model as a Hugging Face directory (slm export hf)")
    ap.add_argument("--slm", default=str(ROOT / "target" / "release" / "slm"))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    common = ["--batch", str(args.batch), "--seq", str(args.seq), "--steps", str(args.steps),
              "--warmup", str(args.warmup)]
    slm = [args.slm, "--threads", str(args.threads), "bench", "train", "-m", args.model, "--json", *common]
    torch = [sys.executable, str(HERE / "bench_finetune_torch.py"), "--model", args.hf,
             "--threads", str(args.threads), *common]
    r = str(args.lora_rank)
    configs = {
        "slm full": slm,
        "torch full": torch + ["--mode", "full"],
        "slm lora": slm + ["--lora-rank", r],
        "torch lora": torch + ["--mode", "lora", "--lora-rank", r, "--lora-alpha", str(2 * args.lora_rank)],
        "slm qlora q8_0": slm + ["--lora-rank", r, "--base-type", "q8_0"],
        "slm qlora q4_0": slm + ["--lora-rank", r, "--base-type", "q4_0"],
        "slm qlora q4_0 ckpt": slm + ["--lora-rank", r, "--base-type", "q4_0", "--activation-checkpointing"],
    }
    runs = {k: [] for k in configs}
    for rnd in range(args.rounds):
        for name, cmd in configs.items():
            v = run_json(cmd)
            tps = v.get("tokens_per_sec", v.get("tokens_per_s"))
            mib = v["peak_memory_bytes"] / 2**20 if "peak_memory_bytes" in v else v["peak_rss_mib"]
            runs[name].append({"tokens_per_s": tps, "peak_mib": mib, "raw": v})
            print(f"round {rnd + 1} {name:<20} {tps:8.1f} tok/s {mib:8.0f} MiB peak", file=sys.stderr, flush=True)

    med = {k: {"tokens_per_s": statistics.median(x["tokens_per_s"] for x in v),
               "peak_mib": statistics.median(x["peak_mib"] for x in v)} for k, v in runs.items()}
    ratios = {
        "full: slm/torch tokens/s": med["slm full"]["tokens_per_s"] / med["torch full"]["tokens_per_s"],
        "full: slm/torch peak memory": med["slm full"]["peak_mib"] / med["torch full"]["peak_mib"],
        "lora: slm/torch+peft tokens/s": med["slm lora"]["tokens_per_s"] / med["torch lora"]["tokens_per_s"],
        "lora: slm/torch+peft peak memory": med["slm lora"]["peak_mib"] / med["torch lora"]["peak_mib"],
        "qlora q8_0 / slm full peak memory": med["slm qlora q8_0"]["peak_mib"] / med["slm full"]["peak_mib"],
        "qlora q4_0 / slm full peak memory": med["slm qlora q4_0"]["peak_mib"] / med["slm full"]["peak_mib"],
        "qlora q4_0 / torch full peak memory": med["slm qlora q4_0"]["peak_mib"] / med["torch full"]["peak_mib"],
        "qlora q4_0 + checkpointing / slm full peak memory":
            med["slm qlora q4_0 ckpt"]["peak_mib"] / med["slm full"]["peak_mib"],
    }
    report = {"cpu": cpu_name(), "flags": cpu_flags(), "threads": args.threads, "batch": args.batch,
              "seq": args.seq, "steps": args.steps, "rounds": args.rounds, "lora_rank": args.lora_rank,
              "medians": med, "ratios": ratios,
              "runs": {k: [x["raw"] for x in v] for k, v in runs.items()}}
    print(json.dumps(report))
    print(f"\n{cpu_name()} ({cpu_flags()}), {args.threads} threads, batch {args.batch} x seq {args.seq}, "
          f"median of {args.rounds} rounds x {args.steps} steps", file=sys.stderr)
    print(f"{'config':<20} {'tokens/s':>9} {'peak MiB':>9}", file=sys.stderr)
    for k, v in med.items():
        print(f"{k:<20} {v['tokens_per_s']:9.1f} {v['peak_mib']:9.0f}", file=sys.stderr)
    for k, v in ratios.items():
        print(f"{k:<50} {v:6.2f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
