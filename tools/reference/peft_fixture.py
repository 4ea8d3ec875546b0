#!/usr/bin/env python3
"""A LoRA adapter written by PEFT on a tiny random Llama, and the logits it gives.

Usage:
  python tools/reference/peft_fixture.py OUT_DIR

Writes (rerunning with the pinned versions reproduces every file byte for byte):

  OUT_DIR/base/        `save_pretrained` of a tiny random LlamaForCausalLM (hidden 64, 2 layers,
                       4 heads / 2 KV heads, head_dim 16, intermediate 128, vocab 256, tied
                       embeddings; transformers' init plus Gaussian noise, as make_hf_fixtures.py)
  OUT_DIR/adapter/     `PeftModel.save_pretrained`: adapter_config.json (target_modules sorted;
                       PEFT writes them from a set) + adapter_model.safetensors
                       of LoraConfig(r=4, lora_alpha=8, lora_dropout=0, all seven projections),
                       lora_A as PEFT initialises it (seeded), lora_B set to seeded N(0, 0.05)
                       values (PEFT starts B at zero, which would make the adapter a no-op)
  OUT_DIR/logits.json  {"input_ids": [2][9], "base_logits", "peft_logits", "merged_logits":
                       [2][9][256], "scaling", versions}: the base model, the PeftModel, and the
                       model after `merge_and_unload()`, all float32, eager attention

The script asserts that the PEFT and merged logits agree (1e-5) and that the adapter moves the
logits (by more than 0.1), so a test comparing against them checks something. Read by
crates/slm-model/tests/peft_reference.rs (the committed copy is tests/fixtures/peft/tiny-llama-lora/).
"""

import json
import sys
import warnings
from pathlib import Path

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import f32_nested, set_determinism, write_json  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
INPUT_IDS = [
    [1, 17, 42, 5, 200, 63, 0, 255, 31],
    [1, 90, 3, 27, 27, 164, 12, 249, 71],
]
MATRIX_NOISE = 0.15
NORM_NOISE = 0.1
LORA_B_STD = 0.05


def build_base() -> LlamaForCausalLM:
    set_determinism(0)
    cfg = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=64,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
    )
    cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(cfg)
    g = torch.Generator().manual_seed(1000)
    with torch.no_grad():
        for _, p in model.named_parameters():  # the tied embedding appears once
            p.add_(torch.randn(p.shape, generator=g) * (MATRIX_NOISE if p.dim() >= 2 else NORM_NOISE))
    return model.eval()


def logits_of(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids, dtype=torch.long)).logits


def main(argv) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)

    base = build_base()
    base.save_pretrained(out / "base")
    base_logits = logits_of(base, INPUT_IDS)

    torch.manual_seed(1)
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(base, cfg)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * LORA_B_STD)
    model.eval()
    model.save_pretrained(out / "adapter")
    peft_logits = logits_of(model, INPUT_IDS)

    # The adapter as a user loads it: a fresh base from disk plus the saved adapter.
    fresh = LlamaForCausalLM.from_pretrained(out / "base", dtype=torch.float32, attn_implementation="eager")
    loaded = PeftModel.from_pretrained(fresh, out / "adapter").eval()
    reload_diff = (logits_of(loaded, INPUT_IDS) - peft_logits).abs().max().item()
    assert reload_diff == 0.0, f"reloaded adapter: logits differ by {reload_diff}"
    merged = loaded.merge_and_unload().eval()
    merged_logits = logits_of(merged, INPUT_IDS)

    merge_diff = (merged_logits - peft_logits).abs().max().item()
    moved = (peft_logits - base_logits).abs().max().item()
    assert merge_diff <= 1e-5, f"merged vs PEFT logits differ by {merge_diff}"
    assert moved > 0.1, f"the adapter moves the logits by only {moved}"

    for f in (out / "base").iterdir():
        f.chmod(0o644)  # save_pretrained leaves the weights 0600
    for f in (out / "adapter").iterdir():
        f.chmod(0o644)
    # PEFT writes target_modules from a set, in an order that changes from run to run: sort it
    # (same formatting as PEFT's: sorted keys, indent 2) so reruns give the same bytes.
    cfg_path = out / "adapter" / "adapter_config.json"
    saved = json.loads(cfg_path.read_text())
    saved["target_modules"] = sorted(saved["target_modules"])
    cfg_path.write_text(json.dumps(saved, indent=2, sort_keys=True))
    readme = out / "adapter" / "README.md"
    if readme.exists():
        readme.unlink()  # PEFT's model card template: nothing the fixture needs
    write_json(
        out / "logits.json",
        {
            "input_ids": INPUT_IDS,
            "scaling": cfg.lora_alpha / cfg.r,
            "base_logits": f32_nested(base_logits),
            "peft_logits": f32_nested(peft_logits),
            "merged_logits": f32_nested(merged_logits),
            "peft_version": peft.__version__,
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "dtype": "float32",
            "attn_implementation": "eager",
        },
    )
    print(
        f"wrote {out}: adapter moves logits by up to {moved:.3f}, merged vs PEFT {merge_diff:.2e}, "
        f"peft {peft.__version__}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
