#!/usr/bin/env python3
"""Check a model directory (e.g. one written by slm) against recorded reference logits.

Usage:
  tools/reference/.venv/bin/python tools/reference/check_hf_roundtrip.py DIR REF_LOGITS_JSON

Loads DIR with transformers' AutoModelForCausalLM.from_pretrained (CPU, float32, eager
attention), runs the "input_ids" of REF_LOGITS_JSON (no attention mask), prints the max abs
difference from the recorded "logits", and records the result under the key basename(DIR) in
tools/reference/roundtrip_results.json. Exit code 0 if max_abs_diff <= 1e-4, 1 otherwise
(2 on a usage error).
"""

import datetime
import json
import os
import sys
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "roundtrip_results.json"
TOL = 1e-4


def main(argv) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    model_dir = Path(argv[1])
    ref = json.loads(Path(argv[2]).read_text())
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()

    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    input_ids = torch.tensor(ref["input_ids"], dtype=torch.long)
    expected = torch.tensor(ref["logits"], dtype=torch.float32)
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits.to(torch.float32)
    if logits.shape != expected.shape:
        print(f"shape mismatch: got {tuple(logits.shape)}, expected {tuple(expected.shape)}")
        diff = float("inf")
    else:
        diff = (logits - expected).abs().max().item()
    ok = diff <= TOL
    print(f"{model_dir}: max_abs_diff {diff:.3e} (tol {TOL:g}) -> {'OK' if ok else 'FAIL'}")

    name = model_dir.resolve().name
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[name] = {
        "max_abs_diff": diff if diff != float("inf") else None,
        "ok": ok,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "transformers_version": transformers.__version__,
        "reference": os.path.relpath(Path(argv[2]).resolve(), HERE.parents[1]),
    }
    RESULTS.write_text(json.dumps(dict(sorted(results.items())), indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
