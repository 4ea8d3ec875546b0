#!/usr/bin/env bash
# Decode and prefill speed of llama.cpp (llama-bench) and `slm bench` on the same GGUF files,
# same threads, interleaved (llama.cpp, slm, llama.cpp, slm, ...), one JSON line per run.
#
#   tools/reference/side_by_side.sh SLM_BIN LLAMA_BENCH ROUNDS MODEL.gguf:TYPE [MODEL.gguf:TYPE ...]
#
# TYPE is what `slm bench --type` uses for that file: `auto` runs the file at its own types
# tensor by tensor, as llama.cpp does (k-quants and Q5 at the nearest type slm runs: see
# docs/INFERENCE.md § 2); f32, q8_0, q4_0, q4_1 requantise every matrix to that type.
# Environment: THREADS (2), PROMPT (256), GEN (128), REPS (3); SLM_QUANT_KERNEL=avx2 caps
# slm's quantised kernels (to time AVX-512 against AVX2 on one machine).
# llama-bench comes from the llama.cpp sources that llama-cpp-python vendors (see README.md
# in this folder: cmake -DGGML_NATIVE=ON, target llama-bench).
set -euo pipefail
slm=$1; llama=$2; rounds=$3; shift 3
threads=${THREADS:-2}; prompt=${PROMPT:-256}; gen=${GEN:-128}; reps=${REPS:-3}
for round in $(seq 1 "$rounds"); do
  for spec in "$@"; do
    file=${spec%%:*}; ty=${spec##*:}
    # Prefill from an empty cache; decode at the depth `slm bench` decodes at (after the
    # prompt), so both attend over the same number of cached positions, both with an f16 KV
    # cache (llama.cpp's default; slm bench --kv f16).
    { "$llama" -m "$file" -t "$threads" -p "$prompt" -n 0 -r "$reps" -o jsonl 2>/dev/null
      "$llama" -m "$file" -t "$threads" -p 0 -n "$gen" -d "$prompt" -r "$reps" -o jsonl 2>/dev/null; } |
      python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
out = {"tool": "llama.cpp", "file": sys.argv[1], "type": sys.argv[2], "round": int(sys.argv[3])}
for r in rows:
    key = "prefill_tok_s" if r["n_prompt"] > 0 else "decode_tok_s"
    out[key] = r["avg_ts"]
print(json.dumps(out))' "$file" "$ty" "$round"
    "$slm" --threads "$threads" bench --model "$file" --type "$ty" --kv f16 --prompt-tokens "$prompt" \
      --gen-tokens "$gen" --reps "$reps" --json |
      python3 -c '
import json, sys
v = json.loads(sys.stdin.read())
print(json.dumps({"tool": "slm", "file": sys.argv[1], "type": sys.argv[2], "round": int(sys.argv[3]),
  "prefill_tok_s": v["prefill_tok_s"], "decode_tok_s": v["decode_tok_s"],
  "bandwidth_gb_s": v["bandwidth_gb_s"], "achieved_gb_s": v["achieved_gb_s"],
  "weight_bytes_per_token": v["weight_bytes_per_token"], "ceiling_tok_s": v["ceiling_tok_s"]}))' "$file" "$ty" "$round"
  done
done
