"""llama.cpp's logits for a token sequence, for the logit-level check of `slm export gguf`.

    tools/reference/.venv/bin/python tools/reference/llamacpp_logits.py FILE.gguf OUT.f32 --tokens 1,72,301,...

Evaluates exactly the given token ids (no BOS added) with llama-cpp-python, every position's
logits kept, the KV cache in f32 (llama.cpp defaults to f16, which alone moves logits by ~1e-3),
and writes them as little-endian f32 [tokens, vocab] to OUT. The test
`llama_cpp_logits_match_ours` in crates/slm-cli/tests/cli.rs compares them with the decode
engine's on the same file.
"""
import argparse

import numpy as np
from llama_cpp import Llama

import llamacpp_compat

llamacpp_compat.apply()  # llama.cpp crashes on AMX CPUs with repacked weights

GGML_TYPE_F32 = 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("out")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    a = ap.parse_args()
    tokens = [int(t) for t in a.tokens.split(",")]
    llm = Llama(model_path=a.gguf, n_ctx=max(64, len(tokens)), n_threads=2, logits_all=True,
                type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32, verbose=False)
    llm.eval(tokens)
    scores = np.asarray(llm.scores[: len(tokens)], dtype="<f4")
    scores.tofile(a.out)


if __name__ == "__main__":
    main()
