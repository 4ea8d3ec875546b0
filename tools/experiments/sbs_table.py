"""Markdown table from `tools/reference/side_by_side.sh` output (JSON lines): per file and type,
slm and llama.cpp prefill/decode tok/s (every round), the ratio of their means, and slm's
achieved bandwidth against the triad measured in the same run.

    python3 tools/experiments/sbs_table.py results.jsonl [more.jsonl ...]
"""
import collections
import json
import sys


def main() -> None:
    runs = collections.defaultdict(lambda: collections.defaultdict(list))
    order = []
    for path in sys.argv[1:]:
        for line in open(path):
            if not line.strip():
                continue
            v = json.loads(line)
            key = (v["file"].split("/")[-1].replace(".gguf", ""), v["type"])
            if key not in runs:
                order.append(key)
            for field in ("prefill_tok_s", "decode_tok_s", "achieved_gb_s", "bandwidth_gb_s",
                          "weight_bytes_per_token"):
                if field in v:
                    runs[key][(v["tool"], field)].append(v[field])
    mean = lambda xs: sum(xs) / len(xs)
    fmt = lambda xs, d: " / ".join(f"{x:,.{d}f}" for x in xs)
    print("| model | type | slm prefill | llama.cpp prefill | ratio | slm decode | llama.cpp decode | ratio "
          "| MB/token | slm GB/s (share of triad) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key in order:
        r = runs[key]
        sp, lp = r[("slm", "prefill_tok_s")], r[("llama.cpp", "prefill_tok_s")]
        sd, ld = r[("slm", "decode_tok_s")], r[("llama.cpp", "decode_tok_s")]
        gb, bw = r[("slm", "achieved_gb_s")], r[("slm", "bandwidth_gb_s")]
        mb = r[("slm", "weight_bytes_per_token")][0] / 1e6
        share = mean([g / b for g, b in zip(gb, bw)])
        print(f"| {key[0]} | {key[1]} | {fmt(sp, 0)} | {fmt(lp, 0)} | {mean(sp) / mean(lp):.2f} "
              f"| {fmt(sd, 1)} | {fmt(ld, 1)} | **{mean(sd) / mean(ld):.2f}** | {mb:.1f} "
              f"| {mean(gb):.1f} ({share:.0%}) |")


if __name__ == "__main__":
    main()
