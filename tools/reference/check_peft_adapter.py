#!/usr/bin/env python3
"""Check that PEFT reads a LoRA adapter written by slm as slm applies it.

Usage:
  python tools/reference/check_peft_adapter.py BASE_HF_DIR ADAPTER_DIR IDS_JSON LOGITS_JSON

BASE_HF_DIR is the base model as a Hugging Face directory (e.g. `slm export hf`), ADAPTER_DIR
the adapter (adapter_config.json + adapter_model.safetensors), IDS_JSON the token ids
([[id, ...], ...], or an object with "input_ids") and LOGITS_JSON slm's logits of the base
with the adapter merged ([batch][seq][vocab], or an object with "logits").

Loads the base with transformers (float32, eager attention), then the adapter with
`PeftModel.from_pretrained`, and checks

  * every tensor of the adapter file landed in a LoRA parameter of the model, unchanged, and
    every LoRA parameter of the model came from the file (no missing or unexpected keys);
  * the PeftModel's logits for the ids equal ours (max |diff| <= 1e-4);
  * after `merge_and_unload()` the merged model's logits equal ours too.

Prints one JSON object (the differences, how far the adapter moves the base model's logits,
the adapter's r / alpha / targets, versions) and exits 0 when everything agrees, 1 otherwise,
2 on a usage error. Needs torch, transformers, safetensors and peft (requirements.txt).
"""

import json
import sys
import warnings
from pathlib import Path

TOL = 1e-4


def load_json(path: Path, key: str):
    v = json.loads(path.read_text())
    return v[key] if isinstance(v, dict) else v


def main(argv) -> int:
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    base_dir, adapter_dir = Path(argv[1]), Path(argv[2])
    ids = load_json(Path(argv[3]), "input_ids")
    ours_list = load_json(Path(argv[4]), "logits")

    import peft
    import torch
    import transformers
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(2)

    input_ids = torch.tensor(ids, dtype=torch.long)
    ours = torch.tensor(ours_list, dtype=torch.float32)

    def logits_of(model):
        with torch.no_grad():
            return model(input_ids=input_ids).logits

    base = AutoModelForCausalLM.from_pretrained(
        base_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    base_logits = logits_of(base)  # before PEFT wraps the base in place
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    cfg = model.peft_config["default"]

    # Every file tensor is a LoRA parameter of the model, and vice versa.
    file_tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    params = {n: p for n, p in model.named_parameters() if "lora_" in n}
    expected = {k.replace(".weight", ".default.weight"): k for k in file_tensors}
    missing = sorted(set(params) - set(expected))
    unexpected = sorted(expected[n] for n in set(expected) - set(params))
    changed = sorted(
        f for n, f in expected.items() if n in params and not torch.equal(params[n].detach(), file_tensors[f].float())
    )

    report = {
        "base": str(base_dir),
        "adapter": str(adapter_dir),
        "tokens": list(input_ids.shape),
        "lora_tensors": len(file_tensors),
        "missing_in_file": missing[:5],
        "unexpected_in_file": unexpected[:5],
        "changed_on_load": changed[:5],
    }
    ok = not missing and not unexpected and not changed
    if tuple(ours.shape) != tuple(base_logits.shape):
        report["error"] = f"our logits have shape {list(ours.shape)}, the model gives {list(base_logits.shape)}"
        report["ok"] = False
        print(json.dumps(report, indent=1))
        return 1

    peft_logits = logits_of(model)
    merged = model.merge_and_unload().eval()
    merged_logits = logits_of(merged)
    report["peft_max_abs_diff"] = (peft_logits - ours).abs().max().item()
    report["merged_max_abs_diff"] = (merged_logits - ours).abs().max().item()
    report["adapter_moves_logits_by"] = (peft_logits - base_logits).abs().max().item()
    ok &= report["peft_max_abs_diff"] <= TOL and report["merged_max_abs_diff"] <= TOL

    report["config"] = {
        "r": cfg.r,
        "lora_alpha": cfg.lora_alpha,
        "use_rslora": cfg.use_rslora,
        "target_modules": sorted(cfg.target_modules),
    }
    report["ok"] = ok
    report["versions"] = {
        "peft": peft.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    print(json.dumps(report, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
