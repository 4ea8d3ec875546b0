"""Input-feature norm spread of every block linear's input (max / median column norm of X over
32 random 256-token windows of the training shard): why Wanda helps on some models and not
others. Paths are the ones used for docs/RESULTS.md § Pruning; edit them for other models.

    tools/reference/.venv/bin/python tools/reference/activation_outliers.py
"""
import torch, numpy as np, sys
from transformers import LlamaForCausalLM
torch.set_num_threads(2)
def shard_tokens(path):
    b = open(path,'rb').read()
    dtype = int.from_bytes(b[12:16],'little'); n = int.from_bytes(b[16:24],'little')
    return np.frombuffer(b[24:24+n*dtype], dtype=np.uint16 if dtype==2 else np.uint32).astype(np.int64)
for name, path, shard, T in [("s15m","/work/models/s15m","/tmp/qsbig/data/train.bin",256),("stories260K","/tmp/s260hf","/work/results/rec260k/data/train.bin",256)]:
    m = LlamaForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()
    toks = shard_tokens(shard); rng = np.random.default_rng(0)
    starts = rng.integers(0, len(toks)-T, 32)
    ids = torch.tensor(np.stack([toks[s:s+T] for s in starts]))
    acc = {}
    hooks = []
    for li, layer in enumerate(m.model.layers):
        for nm in ["q_proj","gate_proj","down_proj"]:
            mod = getattr(layer.self_attn if nm=="q_proj" else layer.mlp, nm)
            def h(mod, inp, out, key=(li,nm)):
                x = inp[0].reshape(-1, inp[0].shape[-1]).double()
                acc[key] = acc.get(key, 0) + (x*x).sum(0)
            hooks.append(mod.register_forward_hook(h))
    with torch.no_grad(): m(ids)
    ratios = {k: (v.sqrt().max()/v.sqrt().median()).item() for k,v in acc.items()}
    for nm in ["q_proj","gate_proj","down_proj"]:
        r = [ratios[(l,nm)] for l in range(len(m.model.layers))]
        print(f"{name:12s} {nm:10s} max/median column norm per layer: " + " ".join(f"{x:5.1f}" for x in r))
