#!/usr/bin/env python3
"""Make token-id fixtures for the GGUF tokenizers slm must match exactly.

What it makes: one compact JSON file per GGUF model under
tools/reference/fixtures_tokenizer/<model-stem>.json, holding, for a fixed list of test
texts, the token ids produced by

  (a) llama.cpp (llama-cpp-python, `Llama(model_path, vocab_only=True)`):
      `.tokenize(text.encode(), add_bos=False, special=False)`  -> "llama_cpp"
      `.tokenize(text.encode(), add_bos=True,  special=False)`  -> "llama_cpp_bos"
      and, for the ChatML case only, also `special=True`         -> "llama_cpp_special[_bos]"
  (b) transformers' tokenizer built from the GGUF
      (`AutoTokenizer.from_pretrained(dir, gguf_file=name)`):
      `encode(text, add_special_tokens=False)`                    -> "transformers"
      `encode(text, add_special_tokens=True)`                     -> "transformers_special"

plus whether (a) and (b) agree (`agree`: add_bos=False vs add_special_tokens=False;
`agree_bos`: add_bos=True vs add_special_tokens=True), the counts, the index of the first
differing id, and GGUF metadata read with the `gguf` package (tokenizer.ggml.model / .pre /
.add_bos_token / .add_eos_token, bos/eos/unk/pad ids, vocab size, first 300 chars of
tokenizer.chat_template).

Texts: the first 20,000 bytes of wikitext-2-raw/wiki.test.raw (stored as byte range + sha256
only, never the text), plus short literal cases (code, Unicode, digits, whitespace,
contractions, ChatML) whose text is stored.

Models: ../shared/data/models/SmolLM2-135M-Instruct.Q4_1.gguf (BPE, pre = "smollm") and
../shared/data/gguf/llama-2-tiny-random.gguf (Llama-2 SentencePiece vocab).

Run from the repository root (data dir defaults to ../shared/data relative to the repo, or
$SLM_SHARED_DATA):

    python3 -m venv tools/reference/.venv
    CMAKE_ARGS="-DGGML_NATIVE=ON" tools/reference/.venv/bin/pip install \
        llama-cpp-python==0.3.36 gguf transformers==5.24.0 tokenizers==0.23.3 numpy
    tools/reference/.venv/bin/python tools/reference/make_tokenizer_fixtures.py

Versions used to make the committed fixtures are recorded inside each JSON ("versions");
at creation: llama-cpp-python 0.3.36, transformers 5.24.0, tokenizers 0.23.3 (see the
JSON for gguf / numpy / torch).
"""

import hashlib
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DATA = Path(os.environ.get("SLM_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
OUT = HERE / "fixtures_tokenizer"

MODELS = [
    DATA / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf",
    DATA / "gguf" / "llama-2-tiny-random.gguf",
]
WIKI = DATA / "wikitext-2-raw" / "wiki.test.raw"
WIKI_BYTES = 20_000

# Short literal cases; their text is stored in the fixtures.
CASES = [
    ("code_python",
     "def fib(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"
     "    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\n"
     "print([fib(i) for i in range(10)])  # [0, 1, 1, 2, ...]\n"),
    ("unicode_accents", "Café naïve résumé façade jalapeño Ångström Zürich"),
    ("unicode_cjk", "日本語のテキスト、中文文本。한국어 텍스트"),
    ("unicode_emoji", "Hello 👋 world 🌍! 👨‍👩‍👧‍👦 family, 🇫🇷 flag, ❤️ heart"),
    ("digits_run", "1234567890"),
    ("digits_pi", "3.14159"),
    ("digits_date", "2024-12-04"),
    ("digits_mixed", "In 1999 there were 12345678 people and 3.14159 pies on 2024-12-04."),
    ("ws_double_space", "two  spaces  between   words"),
    ("ws_tabs", "a\tb\t\tc\t"),
    ("ws_newlines", "line one\nline two\n\nline four\n\n\n"),
    ("ws_trailing", "trailing spaces   "),
    ("ws_leading", "   leading spaces"),
    ("ws_mixed", " \t \n  \n\t x  y\r\n"),
    ("contractions", "don't I'll we've"),
    ("contractions_more", "She's here, they're gone, it'd be fine, you'd've known. DON'T WE'VE"),
    ("empty", ""),
    ("single_space", " "),
    ("chatml",
     "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
     "<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
     "<|im_start|>assistant\n"),
]


def versions():
    import importlib.metadata as md
    v = {"python": sys.version.split()[0]}
    for p in ["llama_cpp_python", "transformers", "tokenizers", "gguf", "numpy", "torch",
              "sentencepiece", "protobuf"]:
        try:
            v[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    return v


def gguf_meta(path):
    from gguf import GGUFReader
    r = GGUFReader(str(path))

    def get(key):
        f = r.fields.get(key)
        if f is None:
            return None
        v = f.contents()
        return v

    tmpl = get("tokenizer.chat_template")
    toks = r.fields.get("tokenizer.ggml.tokens")
    return {
        "general.architecture": get("general.architecture"),
        "tokenizer.ggml.model": get("tokenizer.ggml.model"),
        "tokenizer.ggml.pre": get("tokenizer.ggml.pre"),
        "tokenizer.ggml.add_bos_token": get("tokenizer.ggml.add_bos_token"),
        "tokenizer.ggml.add_eos_token": get("tokenizer.ggml.add_eos_token"),
        "tokenizer.ggml.add_space_prefix": get("tokenizer.ggml.add_space_prefix"),
        "tokenizer.ggml.bos_token_id": get("tokenizer.ggml.bos_token_id"),
        "tokenizer.ggml.eos_token_id": get("tokenizer.ggml.eos_token_id"),
        "tokenizer.ggml.unknown_token_id": get("tokenizer.ggml.unknown_token_id"),
        "tokenizer.ggml.padding_token_id": get("tokenizer.ggml.padding_token_id"),
        "vocab_size": len(toks.data) if toks is not None else None,
        "chat_template_head300": tmpl[:300] if tmpl else None,
        "chat_template_len": len(tmpl) if tmpl else 0,
    }


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def main():
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    wiki = WIKI.read_bytes()[:WIKI_BYTES]
    wiki_text = wiki.decode("utf-8")  # the 20,000-byte prefix ends on a char boundary
    OUT.mkdir(parents=True, exist_ok=True)
    ver = versions()
    for model in MODELS:
        print(f"== {model.name}", flush=True)
        meta = gguf_meta(model)
        llm = Llama(model_path=str(model), vocab_only=True, verbose=False)
        tok_error = None
        try:
            tok = AutoTokenizer.from_pretrained(str(model.parent), gguf_file=model.name)
        except Exception as e:  # record, keep llama.cpp ids
            tok, tok_error = None, f"{type(e).__name__}: {e}"
            print("transformers load failed:", tok_error, flush=True)

        cases = [("wikitext2_test_first20000", wiki_text, False)] + \
                [(n, t, True) for n, t in CASES]
        out_cases = []
        for name, text, store_text in cases:
            rec = {"name": name}
            if store_text:
                rec["text"] = text
            else:
                rec["source"] = "wikitext-2-raw/wiki.test.raw"
                rec["byte_range"] = [0, WIKI_BYTES]
                rec["sha256"] = hashlib.sha256(text.encode()).hexdigest()
            b = text.encode("utf-8")
            rec["llama_cpp"] = llm.tokenize(b, add_bos=False, special=False)
            rec["llama_cpp_bos"] = llm.tokenize(b, add_bos=True, special=False)
            if name == "chatml":
                rec["llama_cpp_special"] = llm.tokenize(b, add_bos=False, special=True)
                rec["llama_cpp_special_bos"] = llm.tokenize(b, add_bos=True, special=True)
            if tok is not None:
                rec["transformers"] = tok.encode(text, add_special_tokens=False)
                rec["transformers_special"] = tok.encode(text, add_special_tokens=True)
                rec["agree"] = rec["llama_cpp"] == rec["transformers"]
                rec["agree_bos"] = rec["llama_cpp_bos"] == rec["transformers_special"]
                if not rec["agree"]:
                    rec["first_diff"] = first_diff(rec["llama_cpp"], rec["transformers"])
                if name == "chatml":
                    rec["agree_llama_cpp_special_vs_transformers"] = \
                        rec["llama_cpp_special"] == rec["transformers"]
            rec["counts"] = {k: len(v) for k, v in rec.items()
                             if isinstance(v, list) and k not in ("byte_range",)}
            out_cases.append(rec)
            print(f"  {name:28s} {rec['counts']} agree={rec.get('agree')} "
                  f"agree_bos={rec.get('agree_bos')}", flush=True)

        doc = {
            "model": model.name,
            "model_path_relative_to_shared_data": str(model.relative_to(DATA)),
            "model_bytes": model.stat().st_size,
            "generator": "tools/reference/make_tokenizer_fixtures.py",
            "versions": ver,
            "calls": {
                "llama_cpp": "Llama(model_path, vocab_only=True).tokenize(text.encode(), add_bos=False, special=False)",
                "llama_cpp_bos": "... add_bos=True, special=False",
                "llama_cpp_special[_bos]": "... special=True (chatml case only)",
                "transformers": "AutoTokenizer.from_pretrained(dir, gguf_file=name).encode(text, add_special_tokens=False)",
                "transformers_special": "... add_special_tokens=True",
            },
            "transformers_load_error": tok_error,
            "transformers_tokenizer_class": type(tok).__name__ if tok is not None else None,
            "gguf_metadata": meta,
            "cases": out_cases,
        }
        path = OUT / (model.stem + ".json")
        with open(path, "w") as f:
            json.dump(doc, f, separators=(",", ":"), ensure_ascii=False)
            f.write("\n")
        print(f"wrote {path} ({path.stat().st_size} bytes)", flush=True)


if __name__ == "__main__":
    main()
