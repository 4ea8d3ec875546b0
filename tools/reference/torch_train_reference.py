#!/usr/bin/env python3
"""Reference loss, gradients and AdamW trajectory for tiny-llama (tests/fixtures/train/).

Loads tests/fixtures/hf/tiny-llama (config.json + model.safetensors, made by
make_hf_fixtures.py), builds a fixed batch (batch 2, seq 12; targets = inputs shifted by one,
drawn from a seeded generator), and records, on CPU in float32 with eager attention:

  * the mean cross-entropy loss over all 24 target tokens (no ignored positions),
  * the gradient of every parameter (HF names) at the fixture weights,
  * 10 steps of torch.optim.AdamW on that same batch: lr 1e-2, betas (0.9, 0.95), eps 1e-8,
    weight_decay 0.1 on 2-D matrices (embedding, attention/MLP projections, lm_head) and 0 on
    the RMSNorm gains; the loss before each step, the loss after the last step, and per-
    parameter sum / L2 norm of the weights after the 10 steps.

Writes
  tests/fixtures/train/tiny_llama_train_ref.safetensors
      "grad.<param name>" float32, "input_ids" int64 [2,12], "targets" int64 [2,12]
  tests/fixtures/train/tiny_llama_train_ref.json

Usage: tools/reference/.venv/bin/python tools/reference/torch_train_reference.py
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FIXTURES, f32, set_determinism, write_json  # noqa: E402

MODEL_DIR = FIXTURES / "hf" / "tiny-llama"
OUT = FIXTURES / "train"
BATCH, SEQ = 2, 12
DATA_SEED = 1234
STEPS = 10
HP = dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)


def main() -> None:
    set_determinism(0)
    config = LlamaConfig.from_json_file(MODEL_DIR / "config.json")
    config._attn_implementation = "eager"
    model = LlamaForCausalLM(config)
    state = load_file(MODEL_DIR / "model.safetensors")
    model.load_state_dict(state, strict=True)
    model.train()  # dropout is 0 in this config; train() only for clarity
    names = [n for n, _ in model.named_parameters()]
    assert set(names) == set(state), (set(names) ^ set(state))

    g = torch.Generator().manual_seed(DATA_SEED)
    seq = torch.randint(0, config.vocab_size, (BATCH, SEQ + 1), generator=g, dtype=torch.long)
    input_ids = seq[:, :-1].contiguous()
    targets = seq[:, 1:].contiguous()

    def loss_fn():
        logits = model(input_ids=input_ids).logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="mean")

    # Loss and gradients at the fixture weights.
    model.zero_grad(set_to_none=True)
    loss0 = loss_fn()
    loss0.backward()
    grads = {f"grad.{n}": p.grad.detach().clone().contiguous() for n, p in model.named_parameters()}
    grad_norm = torch.sqrt(sum((t.double() ** 2).sum() for t in grads.values())).item()

    # AdamW trajectory.
    decay = [n for n, p in model.named_parameters() if p.dim() == 2]
    no_decay = [n for n, p in model.named_parameters() if p.dim() != 2]
    params = dict(model.named_parameters())
    opt = torch.optim.AdamW(
        [
            {"params": [params[n] for n in decay], "weight_decay": HP["weight_decay"]},
            {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
        ],
        lr=HP["lr"],
        betas=HP["betas"],
        eps=HP["eps"],
        amsgrad=False,
        maximize=False,
        foreach=False,
        fused=False,
    )
    losses = []
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        losses.append(loss.item())
        loss.backward()
        opt.step()
    with torch.no_grad():
        final_loss = loss_fn().item()
    assert losses[0] == loss0.item()
    final_params = {
        n: {"sum": f32(p.detach().sum().item()), "l2": f32(p.detach().norm().item())}
        for n, p in model.named_parameters()
    }

    OUT.mkdir(parents=True, exist_ok=True)
    tensors = dict(grads)
    tensors["input_ids"] = input_ids
    tensors["targets"] = targets
    save_file(tensors, OUT / "tiny_llama_train_ref.safetensors", metadata={"format": "pt"})
    (OUT / "tiny_llama_train_ref.safetensors").chmod(0o644)  # save_file leaves 0600
    write_json(
        OUT / "tiny_llama_train_ref.json",
        {
            "model_dir": "tests/fixtures/hf/tiny-llama",
            "batch": BATCH,
            "seq_len": SEQ,
            "data_seed": DATA_SEED,
            "input_ids": input_ids.tolist(),
            "targets": targets.tolist(),
            "loss_reduction": "mean cross-entropy over all batch*seq targets",
            "loss": f32(loss0.item()),
            "grad_global_l2": f32(grad_norm),
            "adamw": {
                "lr": HP["lr"],
                "beta1": HP["betas"][0],
                "beta2": HP["betas"][1],
                "eps": HP["eps"],
                "weight_decay": HP["weight_decay"],
                "decoupled_weight_decay": True,
                "bias_correction": True,
                "amsgrad": False,
                "note": "torch.optim.AdamW: p *= 1 - lr*wd; then Adam update with bias-corrected m/(sqrt(v_hat)+eps)",
            },
            "steps": STEPS,
            "losses_before_each_step": [f32(x) for x in losses],
            "loss_after_last_step": f32(final_loss),
            "decay_params": decay,
            "no_decay_params": no_decay,
            "final_params": final_params,
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
        },
    )
    print(f"loss {loss0.item():.6f}, grad l2 {grad_norm:.6f}")
    print("losses:", " ".join(f"{x:.4f}" for x in losses), f"-> {final_loss:.4f}")


if __name__ == "__main__":
    main()
