#!/usr/bin/python3
"""Goldens for loom's autograd: composite expressions in PyTorch (float64) with fixed inputs,
their outputs and the gradients of sum(out * R) for every input, written to
tests/golden/autograd_goldens.safetensors. Run: /usr/bin/python3 tests/golden/make_autograd_goldens.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import st_io  # noqa: E402

torch.manual_seed(2024)
torch.set_default_dtype(torch.float64)
F = torch.nn.functional
tensors = {}


def case(name, inputs, fn):
    for k, v in inputs.items():
        v.requires_grad_(True)
        tensors[f"{name}.input.{k}"] = v.detach().numpy().copy()
    out = fn(**inputs)
    r = torch.randn_like(out)
    (out * r).sum().backward()
    tensors[f"{name}.output"] = out.detach().numpy()
    tensors[f"{name}.R"] = r.numpy()
    for k, v in inputs.items():
        tensors[f"{name}.grad.{k}"] = v.grad.numpy()


# 1. A 2-layer GELU MLP with layer norm: LN -> Linear -> GELU -> Linear (tanh GELU in a second case).
def mlp(x, ln_w, ln_b, w1, b1, w2, b2, approximate="none"):
    h = F.layer_norm(x, (x.shape[-1],), ln_w, ln_b, eps=1e-6)
    return F.linear(F.gelu(F.linear(h, w1, b1), approximate=approximate), w2, b2)


def mlp_inputs():
    return dict(x=torch.randn(7, 13), ln_w=1 + 0.1 * torch.randn(13), ln_b=0.1 * torch.randn(13),
                w1=torch.randn(24, 13) / 4, b1=0.1 * torch.randn(24), w2=torch.randn(5, 24) / 5, b2=0.1 * torch.randn(5))


case("mlp", mlp_inputs(), mlp)
case("mlp_tanh", mlp_inputs(), lambda **a: mlp(**a, approximate="tanh"))

# 2. Softmax attention with an explicit scale.
case("attention", dict(q=torch.randn(2, 9, 6), k=torch.randn(2, 11, 6), v=torch.randn(2, 11, 4)),
     lambda q, k, v: torch.softmax(q @ k.transpose(-2, -1) * 0.37, dim=-1) @ v)

# 3. BCE-with-logits on multilabel targets, with and without positive weights (scalar output).
case("bce", dict(logits=3 * torch.randn(11, 19)),
     lambda logits: F.binary_cross_entropy_with_logits(logits, (torch.rand(11, 19, generator=torch.Generator().manual_seed(5)) < 0.3).double()).reshape(1))
tensors["bce.targets"] = (torch.rand(11, 19, generator=torch.Generator().manual_seed(5)) < 0.3).double().numpy()
pw = torch.rand(19, generator=torch.Generator().manual_seed(6)) * 3 + 0.5
tensors["bce_pw.pos_weight"] = pw.numpy()
case("bce_pw", dict(logits=3 * torch.randn(11, 19)),
     lambda logits: F.binary_cross_entropy_with_logits(logits, torch.from_numpy(tensors["bce.targets"]), pos_weight=pw).reshape(1))

# 4. A chain of views and reductions.
def chain(x):
    y = x.permute(2, 0, 1)[1:4].reshape(3, -1)                # [3, 24]
    z = y.transpose(0, 1).unsqueeze(0).expand(2, 24, 3)       # [2, 24, 3]
    a = z.sum(dim=1, keepdim=True) * z.mean(dim=(0, 2))[:, None]  # [2, 24, 3]
    return torch.cat([a.var(dim=-1, unbiased=True), z.amax(dim=2), x.max(dim=0).values.reshape(2, -1)[:, :24]], dim=1)


case("chain", dict(x=torch.randn(4, 6, 5)), chain)

st_io.save(os.path.join(os.path.dirname(__file__), "autograd_goldens.safetensors"), tensors,
           {"made_by": "tests/golden/make_autograd_goldens.py", "torch": torch.__version__})
print("wrote", len(tensors), "tensors")
