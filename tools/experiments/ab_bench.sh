#!/usr/bin/env bash
# A/B of two slm binaries on the same models: `slm bench` decode and prefill, interleaved
# (old, new, old, new, ...), one JSON line per run; a median table at the end.
#
#   tools/experiments/ab_bench.sh OLD_BIN NEW_BIN ROUNDS MODEL.gguf:TYPE [MODEL.gguf:TYPE ...]
#
# Environment: THREADS (2), PROMPT (256), GEN (128), REPS (3), KV (f16).
set -euo pipefail
old=$1; new=$2; rounds=$3; shift 3
threads=${THREADS:-2}; prompt=${PROMPT:-256}; gen=${GEN:-128}; reps=${REPS:-3}; kv=${KV:-f16}
out=$(mktemp)
for round in $(seq 1 "$rounds"); do
  for spec in "$@"; do
    file=${spec%%:*}; ty=${spec##*:}
    for bin in "$old" "$new"; do
      "$bin" --threads "$threads" bench --model "$file" --type "$ty" --kv "$kv" \
        --prompt-tokens "$prompt" --gen-tokens "$gen" --reps "$reps" --json |
        python3 -c '
import json, sys
v = json.loads(sys.stdin.read())
print(json.dumps({"bin": sys.argv[1], "file": sys.argv[2], "type": sys.argv[3], "round": int(sys.argv[4]),
  "prefill": v["prefill_tok_s"], "decode": v["decode_tok_s"]}))' "$bin" "$file" "$ty" "$round" | tee -a "$out"
    done
  done
done
python3 - "$out" "$old" "$new" <<'PY'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
old, new = sys.argv[2], sys.argv[3]
for key in dict.fromkeys((r["file"], r["type"]) for r in rows):
    for m in ("decode", "prefill"):
        a = st.median(r[m] for r in rows if (r["file"], r["type"], r["bin"]) == key + (old,))
        b = st.median(r[m] for r in rows if (r["file"], r["type"], r["bin"]) == key + (new,))
        print(f"{key[0]} {key[1]} {m}: {a:.1f} -> {b:.1f} ({b / a:.2f}x)")
PY
rm -f "$out"
