#!/usr/bin/env python3
"""Check that transformers reads an `slm export hf` directory as it reads the original GGUF.

Usage:
  python tools/reference/check_hf_export.py EXPORT_DIR ORIGINAL.gguf

Loads the original with transformers' GGUF reader (`from_pretrained(dir, gguf_file=name)`,
weights dequantised to float32) and the export with `from_pretrained(EXPORT_DIR)` (model and
tokenizer), then compares

  * token ids of a fixed set of texts (prose, code, digits, whitespace runs, Unicode, ChatML),
    with and without special tokens;
  * the chat template: `apply_chat_template(messages, tokenize=False,
    add_generation_prompt=True)` must give the same string (when the original has one);
  * the logits of both models on the ids of one text (max abs difference, same argmax).

Prints one JSON object and exits 0 when everything agrees (logits within 1e-3), 1 otherwise,
2 on a usage error. Needs torch, transformers, accelerate and gguf (tools/reference/requirements.txt).
"""

import json
import sys
from pathlib import Path

TEXTS = [
    "The quick brown fox jumps over the lazy dog. It wasn't the fox's first time.",
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "In 1999 there were 12345678 people and 3.14159 pies on 2024-12-04.",
    "two  spaces   and\ttabs\n\n\nnewlines   ",
    "Café naïve 日本語 👋 🇫🇷",
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
]
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
]
LOGIT_TOL = 1e-3


def main(argv) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    export_dir, gguf = Path(argv[1]), Path(argv[2])
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(2)

    ref_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    our_tok = AutoTokenizer.from_pretrained(export_dir)
    report = {"export": str(export_dir), "original": str(gguf), "texts": []}
    ok = True
    for text in TEXTS:
        for special in (False, True):
            a = ref_tok.encode(text, add_special_tokens=special)
            b = our_tok.encode(text, add_special_tokens=special)
            same = a == b
            ok &= same
            report["texts"].append(
                {"text": text[:40], "special": special, "equal": same, "n": [len(a), len(b)]}
            )
    if ref_tok.chat_template:
        want = ref_tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
        got = (
            our_tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
            if our_tok.chat_template
            else None
        )
        report["chat_template_equal"] = want == got
        ok &= want == got

    ref = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    ours = AutoModelForCausalLM.from_pretrained(
        export_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    ids = torch.tensor([ref_tok.encode(TEXTS[0] + " " + TEXTS[2], add_special_tokens=True)])
    with torch.no_grad():
        a = ref(input_ids=ids).logits[0]
        b = ours(input_ids=ids).logits[0]
    diff = (a - b).abs().max().item()
    same_argmax = bool((a.argmax(-1) == b.argmax(-1)).all())
    report["logits"] = {"tokens": ids.shape[1], "max_abs_diff": diff, "same_argmax": same_argmax}
    ok &= diff <= LOGIT_TOL and same_argmax
    report["equal"] = ok
    report["versions"] = {"transformers": transformers.__version__, "torch": torch.__version__}
    print(json.dumps(report, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
