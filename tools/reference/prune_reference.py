"""Pruning reference fixtures for slm-compress, written from the papers and the official code.

Makes one fixed random linear layer W [out=24, in=64] and calibration input X [n=200, in=64]
(column scales spread over two orders of magnitude, a few strongly correlated columns so
SparseGPT's weight update matters, and one dead column that is zero in every sample) and
computes, in float64:

* magnitude masks: the k = int(numel * s) smallest |W| of the layer (stable order), and N:M;
* Wanda masks (Sun et al. 2023, official `prune_wanda`): |W| * ||X_j||_2, the int(in * s)
  smallest of each output row (stable sort), and N:M within each group of M inputs;
* OBD with the layer-wise Hessian 2 X^T X (diagonal 2 ||X_j||^2): saliency
  1/2 * h_jj * w^2 = ||X_j||^2 * w^2, the k smallest of the layer;
* SparseGPT (Frantar & Alistarh 2023), a transcription of the official `sparsegpt.py`
  `SparseGPT.add_batch` + `fasterprune`: H = 2/n sum x x^T, dead inputs (H_ii = 0 -> H_ii = 1,
  W[:, i] = 0), dampening 0.01 * mean(diag H), upper Cholesky factor of H^-1, columns in blocks
  with lazy updates, the unstructured mask chosen per block over the block's w^2 / d^2 with the
  threshold `sort(tmp)[int(numel * s)]` and `tmp <= thresh`, the N:M mask chosen at each group
  start inside the block, OBS updates of the remaining weights;
* for each result, the reconstruction error ||X W^T - X W_hat^T||_F^2.

N:M here means "at most N non-zeros in every M consecutive inputs" (2:4 keeps 2 of 4); the
official code's `prunen` is the number *pruned* (M - N), equal to N for 2:4 and 4:8.

The whole computation is repeated in float32 (as the official code runs) and the script
checks that the masks agree and the weights are close, so the float64 fixture is a fair
target for both precisions.

Writes `tests/fixtures/prune/layer.safetensors` (W, X, masks as uint8 with 1 = pruned,
SparseGPT weights) and `tests/fixtures/prune/layer.json` (settings, reconstruction errors,
versions).

    tools/reference/.venv/bin/python tools/reference/prune_reference.py
"""

import math

import numpy as np
import torch
from safetensors.torch import save_file

from common import FIXTURES, set_determinism, write_json

OUT, IN, N = 24, 64, 200
SPARSITY = 0.5
BLOCK = 32
PERCDAMP = 0.01
DEAD_COLUMN = 7


def make_layer():
    """W [24, 64] and X [200, 64], float32, from a fixed seed."""
    g = torch.Generator().manual_seed(20240501)
    w = torch.randn(OUT, IN, generator=g) * 0.1
    # Column scales from ~0.05 to ~5 (LLM activations have outlier features).
    scales = torch.exp(torch.randn(IN, generator=g) * 1.0)
    scales[[3, 40]] *= 8.0
    x = torch.randn(N, IN, generator=g) * scales
    # Correlated columns: SparseGPT can move the work of a pruned weight to its twin.
    for a, b in [(10, 11), (20, 52), (33, 34), (60, 2)]:
        x[:, b] = 0.9 * x[:, a] + 0.1 * scales[b] * torch.randn(N, generator=g)
    x[:, DEAD_COLUMN] = 0.0
    return w.float(), x.float()


def recon_error(w, w_hat, x):
    w, w_hat, x = w.double(), w_hat.double(), x.double()
    return float(((x @ w.T - x @ w_hat.T) ** 2).sum())


# ---------------------------------------------------------------------------------- masks


def nm_mask(metric, n_keep, m):
    """Prune the M - N smallest of every group of M consecutive inputs of each row."""
    mask = torch.zeros_like(metric, dtype=torch.bool)
    for ii in range(metric.shape[1]):
        if ii % m == 0:
            tmp = metric[:, ii : ii + m]
            mask.scatter_(1, ii + torch.topk(tmp, m - n_keep, dim=1, largest=False)[1], True)
    return mask


def per_tensor_mask(metric, sparsity):
    """The int(numel * s) smallest of the whole tensor, ties in index order."""
    k = int(metric.numel() * sparsity)
    idx = torch.sort(metric.flatten(), stable=True)[1][:k]
    mask = torch.zeros(metric.numel(), dtype=torch.bool)
    mask[idx] = True
    return mask.reshape(metric.shape)


def per_row_mask(metric, sparsity):
    """Wanda's comparison group: int(in * s) smallest of each output row (stable sort)."""
    mask = torch.zeros_like(metric, dtype=torch.bool)
    indices = torch.sort(metric, dim=-1, stable=True)[1][:, : int(metric.shape[1] * sparsity)]
    mask.scatter_(1, indices, True)
    return mask


def wanda_metric(w, x):
    # Official prune_wanda: scaler_row = ||X_j||^2 / nsamples; metric = |W| * sqrt(scaler_row).
    scaler_row = (x.double() ** 2).sum(0) / x.shape[0]
    return w.double().abs() * torch.sqrt(scaler_row).reshape(1, -1)


# ------------------------------------------------------------------------------ SparseGPT


def sparsegpt_hessian(x, dtype):
    """`SparseGPT.add_batch` for a Linear layer fed one batch of n samples."""
    columns = x.shape[1]
    H = torch.zeros((columns, columns), dtype=dtype)
    nsamples = 0
    inp = x.to(dtype).t()  # [in, n]
    tmp = x.shape[0]
    H *= nsamples / (nsamples + tmp)
    nsamples += tmp
    inp = math.sqrt(2 / nsamples) * inp
    H += inp.matmul(inp.t())
    return H


def fasterprune(W, H, sparsity, prunen=0, prunem=0, blocksize=128, percdamp=0.01):
    """The official `SparseGPT.fasterprune`, without quantisation; returns (W, mask)."""
    W = W.clone()
    H = H.clone()
    rows, columns = W.shape

    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0

    Losses = torch.zeros(rows, dtype=W.dtype)

    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(columns)
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    H = torch.linalg.cholesky(H, upper=True)
    Hinv = H

    mask = None
    full_mask = torch.zeros_like(W, dtype=torch.bool)

    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1

        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Losses1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]

        if prunen == 0:
            if mask is not None:
                mask1 = mask[:, i1:i2]
            else:
                tmp = W1**2 / (torch.diag(Hinv1).reshape((1, -1))) ** 2
                thresh = torch.sort(tmp.flatten())[0][int(tmp.numel() * sparsity)]
                mask1 = tmp <= thresh
        else:
            mask1 = torch.zeros_like(W1) == 1

        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]

            if prunen != 0 and i % prunem == 0:
                tmp = W1[:, i : (i + prunem)] ** 2 / (torch.diag(Hinv1)[i : (i + prunem)].reshape((1, -1))) ** 2
                mask1.scatter_(1, i + torch.topk(tmp, prunen, dim=1, largest=False)[1], True)

            q = w.clone()
            q[mask1[:, i]] = 0

            Q1[:, i] = q
            Losses1[:, i] = (w - q) ** 2 / d**2

            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1

        W[:, i1:i2] = Q1
        full_mask[:, i1:i2] = mask1
        Losses += torch.sum(Losses1, 1) / 2

        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])

    return W, full_mask


# ---------------------------------------------------------------------------------- main


def main():
    set_determinism(0)
    w, x = make_layer()
    wd = w.double()
    out = {"W": w.contiguous(), "X": x.contiguous()}
    errors = {}

    def add_mask(name, mask):
        out[f"{name}.mask"] = mask.to(torch.uint8).contiguous()
        errors[name] = recon_error(w, w.masked_fill(mask, 0.0), x)

    mag = wd.abs()
    add_mask("magnitude.unstructured", per_tensor_mask(mag, SPARSITY))
    add_mask("magnitude.2:4", nm_mask(mag, 2, 4))
    add_mask("magnitude.4:8", nm_mask(mag, 4, 8))

    wm = wanda_metric(w, x)
    add_mask("wanda.unstructured", per_row_mask(wm, SPARSITY))
    add_mask("wanda.2:4", nm_mask(wm, 2, 4))
    add_mask("wanda.4:8", nm_mask(wm, 4, 8))

    col_sq = (x.double() ** 2).sum(0)
    obd = 0.5 * (2.0 * col_sq).reshape(1, -1) * wd**2
    add_mask("obd_layerwise.unstructured", per_tensor_mask(obd, SPARSITY))

    checks = {}
    for name, (n_keep, m) in {"unstructured": (0, 0), "2:4": (2, 4), "4:8": (4, 8)}.items():
        prunen = m - n_keep
        res = {}
        for dtype in (torch.float64, torch.float32):
            H = sparsegpt_hessian(x, dtype)
            res[dtype] = fasterprune(w.to(dtype), H, SPARSITY, prunen, m, blocksize=BLOCK, percdamp=PERCDAMP)
        w64, m64 = res[torch.float64]
        w32, m32 = res[torch.float32]
        assert torch.equal(m64, m32), f"sparsegpt {name}: float32 and float64 masks differ"
        rel = float((w64 - w32.double()).abs().max() / w64.abs().max())
        checks[f"sparsegpt.{name}"] = {"max_rel_diff_f32_vs_f64": rel}
        assert rel < 1e-4, (name, rel)
        # Pruned entries are exactly zero; the mask is what the algorithm chose.
        assert torch.all(w64[m64] == 0)
        key = f"sparsegpt.{name}"
        out[f"{key}.mask"] = m64.to(torch.uint8).contiguous()
        out[f"{key}.weight"] = w64.float().contiguous()
        errors[key] = recon_error(w, w64, x)

    # The claims the Rust tests also make, checked here on the reference itself.
    for pat in ("unstructured", "2:4", "4:8"):
        if pat in ("2:4", "4:8"):
            assert errors[f"sparsegpt.{pat}"] < errors[f"wanda.{pat}"] < errors[f"magnitude.{pat}"], errors
    assert errors["sparsegpt.unstructured"] < errors["wanda.unstructured"] < errors["magnitude.unstructured"]

    dest = FIXTURES / "prune"
    dest.mkdir(parents=True, exist_ok=True)
    save_file(out, str(dest / "layer.safetensors"), metadata={"source": "tools/reference/prune_reference.py"})
    write_json(
        dest / "layer.json",
        {
            "out": OUT,
            "in": IN,
            "n": N,
            "sparsity": SPARSITY,
            "block_size": BLOCK,
            "percdamp": PERCDAMP,
            "dead_column": DEAD_COLUMN,
            "nm_convention": "N:M keeps at most N non-zeros in every M consecutive inputs",
            "mask_convention": "uint8, 1 = pruned (zeroed)",
            "errors": errors,
            "float32_checks": checks,
            "torch_version": torch.__version__,
            "numpy_version": np.__version__,
        },
    )
    for k, v in sorted(errors.items()):
        print(f"{k:32s} {v:.6e}")
    print(checks)


if __name__ == "__main__":
    main()
