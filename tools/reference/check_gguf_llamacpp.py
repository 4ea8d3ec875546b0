"""Does llama.cpp read `slm export gguf` output the way slm does?

Loads a GGUF written by `slm export gguf` with llama-cpp-python (which builds llama.cpp from
source: `tools/reference/.venv/bin/pip install llama-cpp-python`, ~15 min on 2 cores; build it
once outside timed work) and compares greedy continuations of a prompt with `slm generate` on the
same file: same tokenisation (the GGUF's own vocabulary on both sides), same model.

    tools/reference/.venv/bin/python tools/reference/check_gguf_llamacpp.py FILE.gguf target/debug/slm [--tokens 40]

Prints one JSON object: both continuations, whether they are equal, and the first differing
character. Exit status 0 when equal.
"""
import argparse
import json
import subprocess
import sys

from llama_cpp import Llama

import llamacpp_compat

llamacpp_compat.apply()  # llama.cpp crashes on AMX CPUs with repacked weights


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("slm")
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--tokens", type=int, default=40)
    a = ap.parse_args()
    llm = Llama(model_path=a.gguf, n_ctx=256, n_threads=2, verbose=False, seed=0)
    out = llm(a.prompt, max_tokens=a.tokens, temperature=0.0, top_k=1, top_p=1.0,
              repeat_penalty=1.0)
    theirs = out["choices"][0]["text"]
    ours = subprocess.run(
        [a.slm, "generate", "-m", a.gguf, "-n", str(a.tokens), "-t", "0",
         "--prompt", a.prompt, "--no-echo"],
        capture_output=True, text=True, check=True).stdout
    ours = ours.rstrip("\n")
    first = next((i for i, (x, y) in enumerate(zip(theirs, ours)) if x != y),
                 None if len(theirs) == len(ours) else min(len(theirs), len(ours)))
    print(json.dumps({"file": a.gguf, "llama_cpp": theirs, "slm": ours,
                      "equal": theirs == ours, "first_difference": first}))
    return 0 if theirs == ours else 1


if __name__ == "__main__":
    sys.exit(main())
