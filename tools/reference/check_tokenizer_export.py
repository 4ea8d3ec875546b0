#!/usr/bin/env python3
"""Check slm's tokenizer exports against transformers and llama.cpp on the fixture texts.

Usage:
  tools/reference/.venv/bin/python tools/reference/check_tokenizer_export.py \
      HF_DIR GGUF FIXTURE_JSON

HF_DIR is a directory written by `slm export hf` (its tokenizer.json + tokenizer_config.json
are loaded with transformers' AutoTokenizer.from_pretrained(HF_DIR)); GGUF is a file written by
`slm export gguf` (loaded with llama-cpp-python, Llama(GGUF, vocab_only=True)); FIXTURE_JSON is
one of tools/reference/fixtures_tokenizer/*.json (made from the source GGUF by
make_tokenizer_fixtures.py). For every case (WikiText's first 20,000 bytes are read from
$SLM_SHARED_DATA or ../shared/data) it compares, without and with BOS:

  transformers on HF_DIR   encode(text, add_special_tokens=False / True)
  llama.cpp on GGUF        tokenize(text, add_bos=False / True, special=<case is chatml>)
  the fixture's llama.cpp ids on the source GGUF ("llama_cpp[_bos]", "llama_cpp_special[_bos]"
  for the ChatML case, where slm and transformers parse special tokens)

and prints one JSON object: per case the token counts and whether each export equals the
fixture, and the totals. Exit code 0 when every comparison agrees, 1 otherwise, 2 on a usage
error.
"""

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DATA = Path(os.environ.get("SLM_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def case_text(case):
    if "text" in case:
        return case["text"]
    end = case["byte_range"][1]
    return (DATA / case["source"]).read_bytes()[:end].decode("utf-8")


def main(argv) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    hf_dir, gguf, fixture = Path(argv[1]), Path(argv[2]), Path(argv[3])
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    fx = json.loads(fixture.read_text())
    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    llm = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    cases, agree, total = [], 0, 0
    for case in fx["cases"]:
        text = case_text(case)
        special = case["name"] == "chatml" and "llama_cpp_special" in case
        rec = {"name": case["name"]}
        for bos in (False, True):
            suffix = "_bos" if bos else ""
            key = ("llama_cpp_special" if special else "llama_cpp") + suffix
            want = case[key]
            tf = tok.encode(text, add_special_tokens=bos)
            lc = llm.tokenize(text.encode("utf-8"), add_bos=bos, special=special)
            rec[f"reference{suffix}"] = len(want)
            rec[f"transformers{suffix}"] = len(tf)
            rec[f"llama_cpp{suffix}"] = len(lc)
            rec[f"transformers_equal{suffix}"] = tf == want
            rec[f"llama_cpp_equal{suffix}"] = lc == want
            agree += (tf == want) + (lc == want)
            total += 2
        cases.append(rec)
    report = {
        "hf_dir": str(hf_dir),
        "gguf": str(gguf),
        "fixture": fixture.name,
        "tokenizer_class": type(tok).__name__,
        "agree": agree,
        "comparisons": total,
        "all_equal": agree == total,
        "cases": cases,
    }
    print(json.dumps(report, indent=1))
    return 0 if agree == total else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
