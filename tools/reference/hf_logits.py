#!/usr/bin/env python3
"""Write a Hugging Face model's logits for some token ids (the reference side of a check).

Usage:
  python tools/reference/hf_logits.py MODEL_DIR IDS_JSON OUT_JSON

IDS_JSON holds [[id, ...], ...]; OUT_JSON gets {"logits": [batch][seq][vocab]} from
transformers (float32, eager attention). Used by the `slm finetune` CLI test: the logits of
slm's merged model, which PEFT applied to slm's base export must reproduce
(check_peft_adapter.py).
"""

import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    model_dir, ids_path, out_path = argv[1:]
    ids = json.loads(Path(ids_path).read_text())
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, torch_dtype=torch.float32, attn_implementation="eager"
    )
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor(ids)).logits
    Path(out_path).write_text(json.dumps({"logits": logits.tolist()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
