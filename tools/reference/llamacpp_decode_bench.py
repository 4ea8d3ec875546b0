"""Decode and prefill speed of llama.cpp (llama-cpp-python) on a GGUF, batch 1, greedy — the
baseline `slm bench --model` is compared with (docs/PERFORMANCE.md).

    tools/reference/.venv/bin/python tools/reference/llamacpp_decode_bench.py FILE.gguf [--threads 2] [--prompt-tokens 128] [--gen-tokens 128] [--reps 3]

The prompt is the same pseudo-random token ids `slm bench` uses ((i·7919 + 13) mod vocab).
Prints one JSON object with medians over the repetitions.
"""
import argparse
import json
import statistics
import time

import numpy as np
from llama_cpp import Llama

import llamacpp_compat

llamacpp_compat.apply()  # llama.cpp crashes on AMX CPUs with repacked weights


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    llm = Llama(model_path=a.gguf, n_ctx=a.prompt_tokens + a.gen_tokens, n_threads=a.threads,
                n_threads_batch=a.threads, n_batch=512, logits_all=False, verbose=False)
    vocab = llm.n_vocab()
    prompt = [(i * 7919 + 13) % vocab for i in range(a.prompt_tokens)]
    prefill, decode = [], []
    for rep in range(a.reps + 1):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        for _ in range(a.gen_tokens):
            llm.eval([tok])
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        t2 = time.perf_counter()
        if rep > 0:  # the first run warms up
            prefill.append(a.prompt_tokens / (t1 - t0))
            decode.append(a.gen_tokens / (t2 - t1))
    print(json.dumps({"file": a.gguf, "threads": a.threads, "prefill_tok_s": statistics.median(prefill),
                      "decode_tok_s": statistics.median(decode), "runs": {"prefill": prefill, "decode": decode}}))


if __name__ == "__main__":
    main()
