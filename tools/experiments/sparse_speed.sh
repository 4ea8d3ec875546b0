#!/usr/bin/env bash
# Decode speed of pruned models against their dense parent (docs/PERFORMANCE.md § Sparse).
#
#   tools/experiments/sparse_speed.sh SLM_BIN MODELS_DIR ROUNDS SIZE [SIZE ...]
#
# For each SIZE (e.g. 110m, 336m) it expects MODELS_DIR/random-SIZE.gguf (the dense parent,
# ../shared/tools/make_random_gguf.py) and the magnitude-pruned copies
#   slm prune -m random-SIZE.gguf --method magnitude --sparsity 0.5 --out pruned-SIZE-50   (70, 90)
#   slm prune -m random-SIZE.gguf --method magnitude --pattern 2:4 --out pruned-SIZE-24
# and times each with `slm bench` (f32 weights, sparse storage chosen automatically), rounds
# interleaved, one JSON line per run. Environment: THREADS (2), PROMPT (256), GEN (64), REPS (3).
set -euo pipefail
slm=$1; dir=$2; rounds=$3; shift 3
threads=${THREADS:-2}; prompt=${PROMPT:-256}; gen=${GEN:-64}; reps=${REPS:-3}
for round in $(seq 1 "$rounds"); do
  for size in "$@"; do
    for variant in dense 50 70 90 24; do
      model=$dir/pruned-$size-$variant
      [ "$variant" = dense ] && model=$dir/random-$size.gguf
      "$slm" --threads "$threads" bench --model "$model" --prompt-tokens "$prompt" \
        --gen-tokens "$gen" --reps "$reps" --json |
        python3 -c '
import json, sys
v = json.loads(sys.stdin.read())
print(json.dumps({"size": sys.argv[1], "variant": sys.argv[2], "round": int(sys.argv[3]),
  "decode_tok_s": v["decode_tok_s"], "prefill_tok_s": v["prefill_tok_s"],
  "weight_bytes_per_token": v["weight_bytes_per_token"], "storage": v["storage"]}))' "$size" "$variant" "$round"
    done
  done
done
