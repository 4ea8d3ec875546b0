#!/usr/bin/env python3
"""Whole-model pruning reference: SparseGPT and Wanda on a Llama, timed, as the official code runs.

The wall-time baseline for `slm` model pruning. Loads a Hugging Face Llama directory
(`transformers.LlamaForCausalLM`, float32, eval, CPU) and prunes every decoder block the way
the official repositories do it (SparseGPT `llama.py` `llama_sequential`, Wanda `prune_wanda`
/ `prune_sparsegpt`): sequentially, block by block, so block i is calibrated on the outputs
of blocks 0..i-1 *after* they were pruned:

* calibration: `--nsamples` windows of `--seqlen` tokens (default 128 x the model context)
  from an slm token shard (SLMTOKS header: magic b"SLMTOKS\\0", u32 version 1, u32 dtype 2|4,
  u64 count, then the tokens little-endian; see crates/slm-data/src/shards.rs), window
  starts drawn with numpy `default_rng(0).integers(0, count - seqlen + 1, nsamples)`;
* capture: a `Catcher` in place of decoder layer 0 (the official trick) records the hidden
  states layer 0 receives (the embeddings) and the keyword arguments it is called with
  (`position_embeddings=(cos, sin)`, `attention_mask`, `position_ids`), for batches of
  `--batch` windows;
* per block: forward hooks on its 7 linears (q,k,v,o,gate,up,down_proj) accumulate the
  statistics the method needs while all windows go through the block, then each linear is
  pruned to `--sparsity`, then all windows go through the pruned block again to give the next
  block's inputs;
  - SparseGPT: H = 2/n sum x x^T accumulated like the official `SparseGPT.add_batch` (n counts
    sequences, as there), then `fasterprune` (imported from prune_reference.py, a
    transcription of the official one) with blocksize 128, percdamp 0.01, unstructured;
  - Wanda: `scaler_row` = squared input column norms accumulated like the official
    `WrappedGPT.add_batch`, metric |W| * sqrt(scaler_row), per output row the int(in * s)
    smallest (stable sort) are zeroed (`per_row_mask` from prune_reference.py);
* embeddings, final norm and lm_head stay dense.

Timed (time.perf_counter, end to end per method and rep): capture + all blocks (statistics,
pruning, re-forward). Not timed: loading the model from disk, the copy of the dense model each
rep starts from, and the perplexity evaluation.

Before anything is timed, the layer-by-layer path (captured embeddings -> each
`LlamaDecoderLayer` called directly with the captured kwargs -> final norm -> lm_head) is
checked against the model's own logits on a few calibration windows; after each pruning
run, the pipeline's last hidden states (through norm + lm_head) are checked against the
pruned model's own logits the same way.

Reports, per method: seconds per rep, median seconds, achieved sparsity of the block linears
and perplexity of the pruned model on `--ppl-text` (tokenised with the model's
tokenizer.json, no special tokens, cut into non-overlapping windows of `--seqlen` tokens, the
remainder dropped, mean NLL of every next-token prediction inside each window, ppl =
exp(mean)); also the dense model's perplexity. Prints a table and writes `--out-json`.

Usage (from the repository root):
    tools/reference/.venv/bin/python tools/reference/prune_model_reference.py \
        --model /work/models/s15m --shard /tmp/qsbig/data/train.bin \
        --methods sparsegpt,wanda --threads 2 --reps 1 --out-json /tmp/prune_model_reference.json
"""

import argparse
import copy
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import transformers
from tokenizers import Tokenizer
from transformers import LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prune_reference import fasterprune, per_row_mask  # noqa: E402

LINEARS = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
]
BLOCKSIZE = 128
PERCDAMP = 0.01


# ------------------------------------------------------------------------------------ data


def read_shard(path):
    """Memory-maps an SLMTOKS shard; returns the token array (uint16 or uint32)."""
    with open(path, "rb") as f:
        header = f.read(24)
    if len(header) < 24 or header[:8] != b"SLMTOKS\0":
        raise ValueError(f"{path}: not an SLMTOKS shard")
    version = int.from_bytes(header[8:12], "little")
    dtype = int.from_bytes(header[12:16], "little")
    count = int.from_bytes(header[16:24], "little")
    if version != 1:
        raise ValueError(f"{path}: shard version {version}, expected 1")
    np_dtype = {2: np.dtype("<u2"), 4: np.dtype("<u4")}.get(dtype)
    if np_dtype is None:
        raise ValueError(f"{path}: token dtype {dtype}, expected 2 or 4")
    size = Path(path).stat().st_size
    if size != 24 + count * np_dtype.itemsize:
        raise ValueError(f"{path}: {size} bytes, header says {count} tokens of {dtype} bytes")
    return np.memmap(path, dtype=np_dtype, mode="r", offset=24, shape=(count,))


def calibration_windows(tokens, nsamples, seqlen, vocab):
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(tokens) - seqlen + 1, size=nsamples)
    ids = np.stack([np.asarray(tokens[s : s + seqlen], dtype=np.int64) for s in starts])
    if ids.max() >= vocab:
        raise ValueError(f"token id {ids.max()} >= vocab {vocab}")
    return torch.from_numpy(ids)


# ------------------------------------------------------------------------- layer-wise path


class Catcher(nn.Module):
    """Stands in for decoder layer 0: records its input and kwargs, then stops the model."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.inputs = []
        self.kwargs = []

    def forward(self, hidden_states, **kwargs):
        self.inputs.append(hidden_states)
        self.kwargs.append(
            {k: kwargs.get(k) for k in ("attention_mask", "position_embeddings", "position_ids")}
        )
        raise ValueError("caught")


def capture(model, ids, batch):
    """Embedding output for every window, in batches, plus the kwargs layer 0 is called with."""
    layers = model.model.layers
    catcher = Catcher(layers[0])
    layers[0] = catcher
    try:
        for b in range(0, ids.shape[0], batch):
            try:
                model(input_ids=ids[b : b + batch], use_cache=False)
            except ValueError as e:
                if str(e) != "caught":
                    raise
    finally:
        layers[0] = catcher.layer
    return catcher.inputs, catcher.kwargs


def run_layer(layer, inps, kwargs):
    return [layer(x, **kw) for x, kw in zip(inps, kwargs)]


def head_logits(model, hidden):
    return model.lm_head(model.model.norm(hidden))


def layerwise_logits(model, ids, batch):
    inps, kwargs = capture(model, ids, batch)
    for layer in model.model.layers:
        inps = run_layer(layer, inps, kwargs)
    return torch.cat([head_logits(model, h) for h in inps]), kwargs[0]


def check_layerwise(model, ids, batch, tol):
    """Layer-by-layer logits (captured embeddings -> layers -> norm -> lm_head) vs model(ids).

    Also checks that the layer-wise path is causal: changing the middle token of every window
    leaves the logits of the earlier positions unchanged and changes the later ones.
    """
    mine, kw = layerwise_logits(model, ids, batch)
    ref = torch.cat([model(input_ids=ids[b : b + batch], use_cache=False).logits for b in range(0, ids.shape[0], batch)])
    diff = float((mine - ref).abs().max())
    scale = float(ref.abs().max())
    if not diff <= tol:
        raise AssertionError(f"layer-wise logits differ from the model's: max abs diff {diff:.3e} > {tol}")
    mid = ids.shape[1] // 2
    changed = ids.clone()
    changed[:, mid] = (changed[:, mid] + 1) % model.config.vocab_size
    other, _ = layerwise_logits(model, changed, batch)
    before = float((other[:, :mid] - mine[:, :mid]).abs().max())
    after = float((other[:, mid:] - mine[:, mid:]).abs().max())
    if not (before <= tol and after > 1e-3):
        raise AssertionError(f"layer-wise path is not causal: earlier logits moved {before:.3e}, later {after:.3e}")
    mask = kw["attention_mask"]
    mask_desc = "None (sdpa is_causal)" if mask is None else f"{type(mask).__name__} {tuple(getattr(mask, 'shape', ()))}"
    return diff, scale, before, after, mask_desc


# ------------------------------------------------------------------------ method statistics


class SparseGPTStats:
    """The official `SparseGPT.add_batch` for an nn.Linear (H = 2/n sum x x^T, n = sequences)."""

    def __init__(self, layer):
        self.layer = layer
        cols = layer.weight.shape[1]
        self.H = torch.zeros((cols, cols), dtype=torch.float32)
        self.nsamples = 0

    def add_batch(self, inp):
        if len(inp.shape) == 2:
            inp = inp.unsqueeze(0)
        tmp = inp.shape[0]
        if len(inp.shape) == 3:
            inp = inp.reshape((-1, inp.shape[-1]))
        inp = inp.t()
        self.H *= self.nsamples / (self.nsamples + tmp)
        self.nsamples += tmp
        inp = math.sqrt(2 / self.nsamples) * inp.float()
        self.H += inp.matmul(inp.t())

    def prune(self, sparsity):
        W = self.layer.weight.data.float()
        W, _ = fasterprune(W, self.H, sparsity, 0, 0, blocksize=BLOCKSIZE, percdamp=PERCDAMP)
        self.layer.weight.data = W.reshape(self.layer.weight.shape).to(self.layer.weight.data.dtype)
        self.H = None


class WandaStats:
    """The official `WrappedGPT.add_batch` (scaler_row = running mean of squared column norms)."""

    def __init__(self, layer):
        self.layer = layer
        self.scaler_row = torch.zeros(layer.weight.shape[1], dtype=torch.float32)
        self.nsamples = 0

    def add_batch(self, inp):
        if len(inp.shape) == 2:
            inp = inp.unsqueeze(0)
        tmp = inp.shape[0]
        if len(inp.shape) == 3:
            inp = inp.reshape((-1, inp.shape[-1]))
        inp = inp.t()
        self.scaler_row *= self.nsamples / (self.nsamples + tmp)
        self.nsamples += tmp
        inp = inp.type(torch.float32)
        self.scaler_row += torch.norm(inp, p=2, dim=1) ** 2 / self.nsamples

    def prune(self, sparsity):
        W = self.layer.weight.data
        metric = torch.abs(W) * torch.sqrt(self.scaler_row.reshape((1, -1)))
        mask = per_row_mask(metric, sparsity)
        W[mask] = 0


METHODS = {"sparsegpt": SparseGPTStats, "wanda": WandaStats}


def prune_model(model, ids, method, sparsity, batch):
    """The timed pipeline: capture, then per block statistics -> prune -> re-forward."""
    stats_cls = METHODS[method]
    inps, kwargs = capture(model, ids, batch)
    for layer in model.model.layers:
        subset = {name: layer.get_submodule(name) for name in LINEARS}
        stats = {name: stats_cls(mod) for name, mod in subset.items()}
        handles = [
            mod.register_forward_hook(lambda _m, inp, _out, s=stats[name]: s.add_batch(inp[0].data))
            for name, mod in subset.items()
        ]
        run_layer(layer, inps, kwargs)
        for h in handles:
            h.remove()
        for name in LINEARS:
            stats[name].prune(sparsity)
        del stats
        inps = run_layer(layer, inps, kwargs)
    return inps


# ------------------------------------------------------------------------------ evaluation


def block_sparsity(model):
    zeros = total = 0
    for layer in model.model.layers:
        for name in LINEARS:
            w = layer.get_submodule(name).weight
            zeros += int((w == 0).sum())
            total += w.numel()
    return zeros / total


def ppl_windows(model_dir, text_path, seqlen):
    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    ids = tok.encode(Path(text_path).read_text(encoding="utf-8"), add_special_tokens=False).ids
    n = len(ids) // seqlen
    if n == 0:
        raise ValueError(f"{text_path}: {len(ids)} tokens, fewer than one window of {seqlen}")
    return torch.tensor(ids[: n * seqlen], dtype=torch.long).reshape(n, seqlen), len(ids)


def perplexity(model, windows, batch):
    nll = 0.0
    count = 0
    for b in range(0, windows.shape[0], batch):
        x = windows[b : b + batch]
        logits = model(input_ids=x, use_cache=False).logits
        loss = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).double(), x[:, 1:].reshape(-1), reduction="sum"
        )
        nll += float(loss)
        count += x[:, 1:].numel()
    return math.exp(nll / count)


# ---------------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="/work/models/s15m")
    ap.add_argument("--shard", default="/tmp/qsbig/data/train.bin")
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=None, help="default: the model context")
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--methods", default="sparsegpt,wanda")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8, help="windows per forward call")
    ap.add_argument("--ppl-text", default="/work/models/s15m-val.txt")
    ap.add_argument("--check-windows", type=int, default=8, help="windows for the logits checks")
    ap.add_argument("--check-tol", type=float, default=1e-4, help="max abs logits difference allowed")
    ap.add_argument("--out-json", default=None)
    args = ap.parse_args()

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            ap.error(f"unknown method {m!r} (choose from {', '.join(METHODS)})")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    torch.set_grad_enabled(False)

    dense = LlamaForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32)
    dense.eval()
    cfg = dense.config
    seqlen = args.seqlen or cfg.max_position_embeddings
    attn_impl = cfg._attn_implementation

    tokens = read_shard(args.shard)
    ids = calibration_windows(tokens, args.nsamples, seqlen, cfg.vocab_size)
    windows, ppl_tokens = ppl_windows(args.model, args.ppl_text, seqlen)
    print(
        f"model {args.model}: {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, vocab {cfg.vocab_size}, "
        f"attn {attn_impl}; calibration {args.nsamples} x {seqlen} from {args.shard} ({len(tokens)} tokens); "
        f"ppl text {ppl_tokens} tokens -> {windows.shape[0]} windows; threads {torch.get_num_threads()}",
        flush=True,
    )

    check_ids = ids[: args.check_windows]
    diff, scale, before, after, mask_desc = check_layerwise(dense, check_ids, args.batch, args.check_tol)
    print(
        f"layer-wise path vs model logits (dense, {check_ids.shape[0]} windows): max abs diff {diff:.3e} "
        f"(max |logit| {scale:.2f}); attention_mask {mask_desc}; causal check: token {seqlen // 2} changed -> "
        f"earlier logits moved {before:.1e}, later {after:.2f}"
    )

    dense_ppl = perplexity(dense, windows, args.batch)
    print(f"dense ppl {dense_ppl:.4f}", flush=True)

    results = {}
    for method in methods:
        seconds = []
        for rep in range(args.reps):
            model = copy.deepcopy(dense)
            t0 = time.perf_counter()
            outs = prune_model(model, ids, method, args.sparsity, args.batch)
            dt = time.perf_counter() - t0
            seconds.append(dt)
            print(f"{method} rep {rep}: {dt:.2f} s", flush=True)
            if rep < args.reps - 1:
                del model, outs
        # The pipeline's own last-block outputs vs the pruned model's logits.
        nb = math.ceil(check_ids.shape[0] / args.batch)
        mine = torch.cat([head_logits(model, h) for h in outs[:nb]])[: check_ids.shape[0]]
        ref = torch.cat(
            [model(input_ids=check_ids[b : b + args.batch], use_cache=False).logits for b in range(0, check_ids.shape[0], args.batch)]
        )
        pdiff = float((mine - ref).abs().max())
        if not pdiff <= args.check_tol:
            raise AssertionError(f"{method}: pipeline outputs differ from the pruned model's logits by {pdiff:.3e}")
        sp = block_sparsity(model)
        ppl = perplexity(model, windows, args.batch)
        results[method] = {
            "seconds": seconds,
            "median_seconds": statistics.median(seconds),
            "sparsity": sp,
            "ppl": ppl,
            "pipeline_vs_model_logits_max_abs_diff": pdiff,
        }
        del model, outs

    print()
    print(f"{'method':10s} {'median s':>9s} {'seconds':>24s} {'sparsity':>9s} {'ppl':>9s}")
    for method, r in results.items():
        secs = ",".join(f"{s:.2f}" for s in r["seconds"])
        print(f"{method:10s} {r['median_seconds']:9.2f} {secs:>24s} {r['sparsity']:9.4f} {r['ppl']:9.4f}")
    print(f"{'dense':10s} {'':9s} {'':>24s} {0.0:9.4f} {dense_ppl:9.4f}")

    out = dict(results)
    out.update(
        {
            "dense_ppl": dense_ppl,
            "threads": args.threads,
            "nsamples": args.nsamples,
            "seqlen": seqlen,
            "sparsity_target": args.sparsity,
            "batch": args.batch,
            "reps": args.reps,
            "model": str(args.model),
            "shard": str(args.shard),
            "ppl_text": str(args.ppl_text),
            "ppl_windows": int(windows.shape[0]),
            "attn_implementation": attn_impl,
            "layerwise_vs_model_logits_max_abs_diff": diff,
            "layerwise_attention_mask": mask_desc,
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "numpy_version": np.__version__,
        }
    )
    if args.out_json:
        path = Path(args.out_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
