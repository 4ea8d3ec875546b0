"""llama.cpp's logits for a token sequence, for the logit-level checks of our GGUF files.

    tools/reference/.venv/bin/python tools/reference/llamacpp_logits.py FILE.gguf OUT.f32 --tokens 1,72,301,...
    tools/reference/.venv/bin/python tools/reference/llamacpp_logits.py FILE.gguf OUT.f32 --prompt "Once upon a time" --greedy 32

Evaluates the given token ids (no BOS added), or the prompt tokenised by the file's own
vocabulary, with llama-cpp-python, every position's logits kept, the KV cache in f32
(llama.cpp defaults to f16, which alone moves logits by ~1e-3). With `--greedy N` llama.cpp
first continues the sequence greedily by N tokens and the logits cover the whole sequence.
Writes the logits as little-endian f32 [tokens, vocab] to OUT and prints {"tokens": [...]}
(the evaluated ids). The tests `llama_cpp_logits_match_ours` (crates/slm-cli/tests/cli.rs)
and `llama_cpp_k_quant_files_run_natively` (crates/slm-cli/tests/kquant_run.rs) compare
them with the decode engine's on the same file.
"""
import argparse
import json

import numpy as np
from llama_cpp import Llama

import llamacpp_compat

llamacpp_compat.apply()  # llama.cpp crashes on AMX CPUs with repacked weights

GGML_TYPE_F32 = 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("out")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--tokens", help="comma-separated token ids")
    src.add_argument("--prompt", help="text, tokenised as the file's tokenizer does")
    ap.add_argument("--greedy", type=int, default=0, help="greedy tokens to add first")
    a = ap.parse_args()
    llm = Llama(model_path=a.gguf, n_ctx=512, n_threads=2, logits_all=True,
                type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, verbose=False)
    if a.tokens is not None:
        tokens = [int(t) for t in a.tokens.split(",")]
    else:
        tokens = llm.tokenize(a.prompt.encode("utf-8"), add_bos=True, special=True)
    if a.greedy > 0:
        llm.eval(tokens)
        for _ in range(a.greedy):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            tokens.append(nxt)
            llm.eval([nxt])
        llm.reset()
    llm.eval(tokens)
    scores = np.asarray(llm.scores[: len(tokens)], dtype="<f4")
    scores.tofile(a.out)
    print(json.dumps({"tokens": tokens}))


if __name__ == "__main__":
    main()
