#!/usr/bin/env python3
"""Tables and the quality-vs-tokens plot of the structured-pruning comparison (compare.sh).

    python3 tools/structured/table.py RUN_DIR [--svg docs/img/structured_tokens.svg]

Reads RUN_DIR/eval/NAME.json (four JSON lines from `slm eval --json`: WikiText-2 test head
perplexity, TinyStories validation head perplexity, two task runs), RUN_DIR/NAME/config.json
and RUN_DIR/*/metrics.jsonl (held-out loss during recovery), and prints Markdown: the model
table with the mean task score and its margin over chance, then the held-out loss per tokens
spent. Standard library only.
"""
import json
import sys
from pathlib import Path

TASKS = [("arc_easy", "acc", 0.25), ("winogrande", "acc", 0.5), ("openbookqa", "acc_norm", 0.25),
         ("copa", "acc", 0.5), ("boolq", "acc", 0.5)]
ROWS = [
    ("parent", "parent (SmolLM2-135M-Instruct, Q4_1 dequantised)", None),
    ("p50", "(a) 50% importance-pruned, before recovery", "p50"),
    ("p50-kd", "(a) 50% importance-pruned + KD", "p50"),
    ("p50-random-kd", "(b) 50% same shape, random units + KD", "p50-random"),
    ("p50-scratch", "(c) 50% same shape, random init + CE", "p50"),
    ("p50-other-kd", "(d) 50% width only (MLP 512, 30 layers) + KD", "p50-other"),
    ("wanda50-kd", "(e) 50% unstructured Wanda + KD (masks held)", "wanda50"),
    ("p70", "(a) 70% importance-pruned, before recovery", "p70"),
    ("p70-kd", "(a) 70% importance-pruned + KD", "p70"),
    ("p70-random-kd", "(b) 70% same shape, random units + KD", "p70-random"),
    ("p70-scratch", "(c) 70% same shape, random init + CE", "p70"),
]


def params(cfg):
    d, f, l = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    h, k, e = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg.get("head_dim", d // cfg["num_attention_heads"])
    non_emb = l * (d * (h * e + 2 * k * e) + h * e * d + 3 * d * f + 2 * d) + d
    return non_emb, non_emb + cfg["vocab_size"] * d * (1 if cfg.get("tie_word_embeddings", True) else 2)


def shape(cfg):
    return f"{cfg['num_hidden_layers']}L d{cfg['hidden_size']} {cfg['num_attention_heads']}/{cfg['num_key_value_heads']}h f{cfg['intermediate_size']}"


def main():
    run = Path(sys.argv[1])
    parent_cfg = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                  "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152}
    print("| model | shape | non-emb params | WikiText-2 ppl | TinyStories ppl | "
          + " | ".join(f"{t} {m}" for t, m, _ in TASKS) + " | mean task | margin over chance | margin without BoolQ |")
    print("|---" * (6 + len(TASKS) + 2) + "|")
    chance = sum(c for _, _, c in TASKS) / len(TASKS)
    parent_margin = None
    parent_margin4 = None
    chance4 = sum(c for t, _, c in TASKS if t != "boolq") / (len(TASKS) - 1)
    for name, label, cfg_dir in ROWS:
        f = run / "eval" / f"{name}.json"
        if not f.exists() or f.stat().st_size == 0:
            continue
        lines = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
        ppl = [x["ppl"] for x in lines if "ppl" in x]
        scores = {}
        for x in lines:
            for t in x.get("tasks", []):
                for m in t["metrics"]:
                    scores[(t["task"], m["metric"])] = m["value"]
        cfg = parent_cfg if name == "parent" else json.loads((run / name / "config.json").read_text())
        ne, tot = params(cfg)
        vals = [scores.get((t, m)) for t, m, _ in TASKS]
        mean = sum(v for v in vals if v is not None) / max(1, sum(v is not None for v in vals))
        margin = mean - chance
        v4 = [v for (t, _, _), v in zip(TASKS, vals) if t != "boolq" and v is not None]
        margin4 = sum(v4) / max(1, len(v4)) - chance4
        if name == "parent":
            parent_margin = margin
            parent_margin4 = margin4
        keep4 = f" ({100 * margin4 / parent_margin4:.0f}%)" if parent_margin4 and name != "parent" else ""
        keep = f" ({100 * margin / parent_margin:.0f}% of the parent's)" if parent_margin and name != "parent" else ""
        cells = " | ".join("-" if v is None else f"{v:.3f}" for v in vals)
        wt = f"{ppl[0]:.1f}" if len(ppl) > 0 else "-"
        ts = f"{ppl[1]:.2f}" if len(ppl) > 1 else "-"
        print(f"| {label} | {shape(cfg)} | {ne / 1e6:.1f}M | {wt} | {ts} | {cells} | {mean:.3f} | {margin:+.3f}{keep} | {margin4:+.3f}{keep4} |")
    print()
    print("Held-out loss (val split of the recovery text) by tokens spent:")
    print()
    curves = {}
    for d in sorted(run.glob("*/metrics.jsonl")):
        pts = [(r["tokens"], r["val_loss"]) for r in map(json.loads, d.read_text().splitlines()) if "val_loss" in r]
        if pts:
            curves[d.parent.name] = pts
    steps = sorted({t for p in curves.values() for t, _ in p})
    print("| run | " + " | ".join(f"{t // 1000}k" for t in steps) + " |")
    print("|---" * (len(steps) + 1) + "|")
    for k, p in curves.items():
        m = dict(p)
        print(f"| {k} | " + " | ".join(f"{m[t]:.3f}" if t in m else "-" for t in steps) + " |")
    if "--svg" in sys.argv:
        svg(curves, Path(sys.argv[sys.argv.index("--svg") + 1]))


def svg(curves, out):
    keep = [k for k in curves if k.startswith(("p50-kd", "p50-random", "p50-scratch", "p70-kd", "p70-random", "p70-scratch"))]
    if not keep:
        return
    W, H, L, B = 720, 420, 60, 50
    xs = [t for k in keep for t, _ in curves[k]]
    ys = [v for k in keep for _, v in curves[k]]
    x0, x1, y0, y1 = 0, max(xs), min(ys) - 0.1, max(ys) + 0.1
    X = lambda t: L + (W - L - 20) * (t - x0) / (x1 - x0)
    Y = lambda v: H - B - (H - B - 30) * (v - y0) / (y1 - y0)
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">Held-out loss vs recovery tokens (SmolLM2-135M pruned)</text>',
             f'<line x1="{L}" y1="{H - B}" x2="{W - 20}" y2="{H - B}" stroke="black"/>',
             f'<line x1="{L}" y1="30" x2="{L}" y2="{H - B}" stroke="black"/>',
             f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">tokens</text>',
             f'<text x="14" y="{H / 2}" transform="rotate(-90 14 {H / 2})" text-anchor="middle">val loss (nats)</text>']
    for i in range(6):
        v = y0 + (y1 - y0) * i / 5
        parts.append(f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
        t = x1 * i / 5
        parts.append(f'<text x="{X(t):.1f}" y="{H - B + 16}" text-anchor="middle">{int(t / 1000)}k</text>')
    for i, k in enumerate(keep):
        c = colours[i % len(colours)]
        pts = " ".join(f"{X(t):.1f},{Y(v):.1f}" for t, v in curves[k])
        parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{pts}"/>')
        parts.append(f'<text x="{W - 200}" y="{40 + 16 * i}" fill="{c}">{k}</text>')
    parts.append("</svg>")
    out.write_text("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
