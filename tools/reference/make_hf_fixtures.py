#!/usr/bin/env python3
"""Make tiny Hugging Face checkpoints + reference logits under tests/fixtures/hf/.

Every model is built on CPU in float32 from fixed seeds, so rerunning this script with the
pinned versions (requirements.txt) reproduces the files bit for bit.

Models written (each dir: config.json, generation_config.json, weights, logits.json,
config.legacy.json):
  tiny-llama/              LlamaForCausalLM, GQA 4/2 heads, untied lm_head
  tiny-llama-sharded/      same weights, saved in several shards + model.safetensors.index.json
  tiny-qwen2/              Qwen2ForCausalLM, q/k/v biases, tied embeddings
  tiny-llama-rope-llama3/  same weights as tiny-llama, rope_type llama3 scaling
  tiny-llama-rope-linear/  same weights as tiny-llama, rope_type linear scaling

transformers >= 5 writes the RoPE settings as one "rope_parameters" object (with rope_theta
inside) instead of the top-level "rope_theta" + "rope_scaling" that checkpoints made with
transformers 4.x (i.e. almost every real checkpoint) carry. config.legacy.json is the same
config rewritten in that 4.x layout (also "torch_dtype" for "dtype"); this script checks that transformers loads it to the
same model (identical logits), so Rust loaders can be tested on both spellings.

Usage: tools/reference/.venv/bin/python tools/reference/make_hf_fixtures.py
"""

import json
import shutil
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FIXTURES, f32_nested, set_determinism, write_json  # noqa: E402

OUT = FIXTURES / "hf"
KEEP = {"config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json"}

# Fixed token ids (batch 2, length 13), all in [0, 96); include both ends of the vocab.
INPUT_IDS = [
    [1, 17, 42, 5, 88, 63, 0, 95, 31, 31, 7, 54, 76],
    [1, 90, 3, 27, 27, 64, 12, 49, 71, 2, 38, 95, 0],
]

# Perturbation std (added on top of transformers' default init, which is N(0, 0.02) for
# matrices, ones for RMSNorm gains and zeros for biases). Chosen so logits have std ~1 and
# attention/MLP branches are not negligible next to the residual stream.
MATRIX_NOISE = 0.18
NORM_NOISE = 0.1
BIAS_NOISE = 0.1

COMMON = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=56,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
)


def llama_config(**over) -> LlamaConfig:
    kw = dict(
        COMMON,
        rope_theta=10000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        attention_bias=False,
    )
    kw.update(over)
    return LlamaConfig(**kw)


def qwen2_config() -> Qwen2Config:
    return Qwen2Config(
        **COMMON,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    )


def perturb_(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied params appear once
            if p.dim() >= 2:
                std = MATRIX_NOISE
            elif name.endswith("bias"):
                std = BIAS_NOISE
            else:
                std = NORM_NOISE
            p.add_(torch.randn(p.shape, generator=g) * std)


def build(cls, config, seed: int):
    set_determinism(seed)
    config._attn_implementation = "eager"
    model = cls(config)
    perturb_(model, seed + 1000)
    model.eval()
    return model


def logits_of(model, input_ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor(input_ids, dtype=torch.long)).logits


def legacy_config(cfg: dict) -> dict:
    """Rewrite a transformers-5 config dict in the transformers-4 layout."""
    cfg = dict(cfg)
    rp = dict(cfg.pop("rope_parameters"))
    theta = rp.pop("rope_theta")
    out = {}
    for k, v in cfg.items():
        out[k] = v
        if k == "rms_norm_eps":  # place the rope keys where 4.x would
            out["rope_scaling"] = None if rp.get("rope_type") == "default" else rp
            out["rope_theta"] = theta
    if "rope_theta" not in out:
        out["rope_scaling"] = None if rp.get("rope_type") == "default" else rp
        out["rope_theta"] = theta
    out.pop("layer_types", None)  # 5.x-only field
    if "dtype" in out:  # 4.x spelled it torch_dtype
        out["torch_dtype"] = out.pop("dtype")
    return dict(sorted(out.items()))


def save(model, name: str, max_shard_size=None) -> Path:
    d = OUT / name
    if d.exists():
        shutil.rmtree(d)
    kw = {}
    if max_shard_size is not None:
        kw["max_shard_size"] = max_shard_size
    model.save_pretrained(d, **kw)
    removed = []
    for f in sorted(d.iterdir()):
        if f.name not in KEEP and not (f.name.startswith("model-") and f.name.endswith(".safetensors")):
            removed.append(f.name)
            if f.is_dir():
                shutil.rmtree(f)
            else:
                f.unlink()
    if removed:
        print(f"  {name}: removed {removed}")
    for f in d.iterdir():
        f.chmod(0o644)  # save_pretrained leaves the weights 0600

    # Reference logits, from the in-memory model.
    logits = logits_of(model, INPUT_IDS)
    write_json(
        d / "logits.json",
        {
            "input_ids": INPUT_IDS,
            "logits": f32_nested(logits),
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "dtype": "float32",
            "attn_implementation": "eager",
        },
    )

    # Reload from disk: must reproduce the logits exactly.
    re = type(model).from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    diff = (logits_of(re, INPUT_IDS) - logits).abs().max().item()
    assert diff == 0.0, f"{name}: reload diff {diff}"

    # Legacy (transformers 4.x layout) config: same model, same logits.
    cfg = json.loads((d / "config.json").read_text())
    legacy = legacy_config(cfg)
    (d / "config.legacy.json").write_text(json.dumps(legacy, indent=2, sort_keys=True) + "\n")
    cfg_cls = type(model.config)
    lc = cfg_cls.from_dict(legacy)
    assert lc.rope_parameters == model.config.rope_parameters, (lc.rope_parameters, model.config.rope_parameters)
    lc._attn_implementation = "eager"
    lm = type(model)(lc).eval()
    lm.load_state_dict(model.state_dict())
    ldiff = (logits_of(lm, INPUT_IDS) - logits).abs().max().item()
    assert ldiff == 0.0, f"{name}: legacy config diff {ldiff}"

    print(
        f"  {name}: logits std {logits.std().item():.3f} max|.| {logits.abs().max().item():.3f}; "
        f"files {sorted(f.name for f in d.iterdir())}"
    )
    return d


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    OUT.mkdir(parents=True, exist_ok=True)

    base = build(LlamaForCausalLM, llama_config(), seed=0)
    save(base, "tiny-llama")
    base_sd = {k: v.clone() for k, v in base.state_dict().items()}

    # Sharded copy: ~92 KB of float32 weights -> 40 KB shards.
    d = save(base, "tiny-llama-sharded", max_shard_size="40KB")
    shards = sorted(d.glob("model-*.safetensors"))
    assert 2 <= len(shards) <= 3 and (d / "model.safetensors.index.json").exists(), shards
    merged = {}
    for s in shards:
        merged.update(load_file(s))
    single = load_file(OUT / "tiny-llama" / "model.safetensors")
    assert merged.keys() == single.keys() and all(torch.equal(merged[k], single[k]) for k in single)

    for name, over in [
        (
            "tiny-llama-rope-llama3",
            dict(
                rope_theta=500000.0,
                rope_scaling={
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 16,
                },
            ),
        ),
        ("tiny-llama-rope-linear", dict(rope_scaling={"rope_type": "linear", "factor": 2.0})),
    ]:
        cfg = llama_config(**over)
        cfg._attn_implementation = "eager"
        m = LlamaForCausalLM(cfg).eval()
        m.load_state_dict(base_sd)  # identical weights: only the RoPE differs
        save(m, name)
        # The scaling must actually matter at these sizes.
        assert not torch.equal(logits_of(m, INPUT_IDS), logits_of(base, INPUT_IDS))

    qwen = build(Qwen2ForCausalLM, qwen2_config(), seed=1)
    assert qwen.lm_head.weight is qwen.model.embed_tokens.weight
    save(qwen, "tiny-qwen2")


if __name__ == "__main__":
    main()
