#!/usr/bin/python3
"""Goldens for loom's transformer layers, from plain PyTorch with timm/MAE parameter names.

Writes tests/golden/vit_goldens.safetensors holding, for a small ViT (depth 2, dim 64,
heads 4, patch 8, 14 channels, 32x32 input), a single Block and scaled-dot-product attention alone:
the weights under their timm names (prefixed vit./block.), the inputs, the outputs, a fixed
random weighting R of the output (loss = sum(out * R)), and the gradient of that loss with
respect to every parameter and input (prefixed grad.). Also the ViT patch-embedding weight in conv
shape [D, C, p, p], as timm stores it. Weights and inputs are rounded to float32 first and the
model runs in float64, so every stored value is the float32 rounding of an exact-in-double result
(half the file size; loom's double path is compared at float32 rounding precision). Run: /usr/bin/python3 tests/golden/make_vit_goldens.py
"""
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import st_io  # noqa: E402
from torch_layers import Block, PatchEmbed, sincos_2d  # noqa: E402

torch.manual_seed(1234)
torch.set_default_dtype(torch.float64)
DIM, DEPTH, HEADS, PATCH, CHANS, IMG = 64, 2, 4, 8, 14, 32


class ViT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.patch_embed = PatchEmbed(CHANS, DIM, PATCH)
        self.cls_token = torch.nn.Parameter(torch.randn(1, 1, DIM) * 0.02)
        grid = IMG // PATCH
        self.register_buffer("pos_embed", torch.from_numpy(sincos_2d(DIM, grid, True)).unsqueeze(0))
        self.blocks = torch.nn.ModuleList([Block(DIM, HEADS) for _ in range(DEPTH)])
        self.norm = torch.nn.LayerNorm(DIM, eps=1e-6)

    def forward(self, x):
        x = self.patch_embed(x) + self.pos_embed[:, 1:, :]
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def randomize(module):
    # Non-trivial LayerNorm affine and biases, so their gradients are checked with real values.
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("weight") else 0.0))


def f32(a):
    return a.astype(np.float32)


def run(prefix, module, inputs, out_fn, tensors):
    randomize(module)
    with torch.no_grad():
        for p in list(module.parameters()) + list(inputs.values()):
            p.copy_(p.float().double())
    for name, x in inputs.items():
        x.requires_grad_(True)
        tensors[f"{prefix}input.{name}"] = f32(x.detach().numpy())
    out = out_fn(module, *inputs.values())
    r = torch.randn_like(out).float().double()
    (out * r).sum().backward()
    tensors[f"{prefix}output"] = f32(out.detach().numpy())
    tensors[f"{prefix}R"] = f32(r.numpy())  # R is used as stored: round it before the loss
    for name, p in module.named_parameters():
        tensors[f"{prefix}{name}"] = f32(p.detach().numpy())
        tensors[f"{prefix}grad.{name}"] = f32(p.grad.numpy())
    for name, b in module.named_buffers():
        tensors[f"{prefix}{name}"] = f32(b.numpy())
    for name, x in inputs.items():
        tensors[f"{prefix}grad.input.{name}"] = f32(x.grad.numpy())


tensors = {}
vit = ViT()
run("vit.", vit, {"x": torch.randn(2, CHANS, IMG, IMG)}, lambda m, x: m(x), tensors)
block = Block(DIM, HEADS)
run("block.", block, {"x": torch.randn(3, 17, DIM)}, lambda m, x: m(x), tensors)
attn_inputs = {n: torch.randn(1, 2, 97, 40) for n in ("q", "k", "v")}
run("sdpa.", torch.nn.Module(), attn_inputs,
    lambda m, q, k, v: ((q @ k.transpose(-2, -1)) / math.sqrt(40)).softmax(-1) @ v, tensors)
st_io.save(os.path.join(os.path.dirname(__file__), "vit_goldens.safetensors"), tensors,
           {"made_by": "tests/golden/make_vit_goldens.py", "torch": torch.__version__})
print("wrote", len(tensors), "tensors")
