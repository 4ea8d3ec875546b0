"""Quantise a GGUF file with llama.cpp's own quantiser (llama-cpp-python's binding of
`llama_model_quantize`, what `llama-quantize IN OUT TYPE` runs), without an importance matrix.

    python llama_quantize.py IN.gguf OUT.gguf q4_k_m [--threads N]

Types: q4_k_m, q5_k_m, q6_k, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_s, q5_k_s. The reference for
`slm quantize --type …` (crates/slm-cli/tests/kquant_cli.rs compares every tensor's type and
bytes with slm's file).
"""

import argparse
import sys

import llama_cpp

# llama.h's llama_ftype values.
FTYPES = {
    "q4_0": 2,
    "q4_1": 3,
    "q8_0": 7,
    "q5_0": 8,
    "q5_1": 9,
    "q4_k_s": 14,
    "q4_k_m": 15,
    "q5_k_s": 16,
    "q5_k_m": 17,
    "q6_k": 18,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("type", choices=sorted(FTYPES))
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[a.type]
    params.nthread = a.threads
    rc = llama_cpp.llama_model_quantize(a.input.encode(), a.output.encode(), params)
    if rc != 0:
        print(f"llama_model_quantize failed ({rc})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
