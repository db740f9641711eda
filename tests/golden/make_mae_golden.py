#!/usr/bin/python3
"""Golden for loom's multi-modal MAE (include/loom/models/mae.hpp), from plain PyTorch.

A small group-tokenized MAE — groups s1 (2 channels) and s2 (3 channels), 16x16 images, patch 4
(L = 16 locations, T = 32 group tokens), encoder 32/2/2, decoder 24/1/2, norm_pix — with the same
parameter names as loom, a fixed mask (independent masking from torch.rand noise, K = 10), and
writes mae_golden.safetensors: the weights (prefix w.; patch embeddings in timm's conv shape
[D, C, p, p]), the inputs (input.s1, input.s2), the mask plan (ids_keep, ids_restore, mask), the
total loss, the per-group losses and the gradient of the total loss for every parameter (grad.).
Weights and inputs are rounded to float32; the model runs in float64 and stores float32 roundings.
Run: /usr/bin/python3 tests/golden/make_mae_golden.py
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import st_io  # noqa: E402
from torch_layers import Block, PatchEmbed, sincos_2d  # noqa: E402

torch.manual_seed(2024)
torch.set_default_dtype(torch.float64)
GROUPS = {"s1": 2, "s2": 3}
IMG, PATCH, DIM, DEPTH, HEADS = 16, 4, 32, 2, 2
DEC_DIM, DEC_DEPTH, DEC_HEADS = 24, 1, 2
B, KEEP = 3, 10
GRID = IMG // PATCH
L = GRID * GRID
G = len(GROUPS)
T = G * L


def patchify(x):
    """[B, C, H, W] -> [B, L, p*p*C] in the MAE reference's order (einsum 'nchpwq->nhwpqc')."""
    b, c = x.shape[:2]
    x = x.reshape(b, c, GRID, PATCH, GRID, PATCH)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, L, PATCH * PATCH * c)


class MAE(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.patch_embed = torch.nn.ModuleDict({g: PatchEmbed(c, DIM, PATCH) for g, c in GROUPS.items()})
        self.cls_token = torch.nn.Parameter(torch.randn(1, 1, DIM) * 0.02)
        self.register_buffer("pos_embed", torch.from_numpy(sincos_2d(DIM, GRID, True)).unsqueeze(0))
        self.group_embed = torch.nn.Parameter(torch.randn(G, DIM) * 0.02)
        self.blocks = torch.nn.ModuleList([Block(DIM, HEADS) for _ in range(DEPTH)])
        self.norm = torch.nn.LayerNorm(DIM, eps=1e-6)
        self.decoder_embed = torch.nn.Linear(DIM, DEC_DIM)
        self.mask_token = torch.nn.Parameter(torch.randn(1, 1, DEC_DIM) * 0.02)
        self.register_buffer("decoder_pos_embed", torch.from_numpy(sincos_2d(DEC_DIM, GRID, True)).unsqueeze(0))
        self.decoder_group_embed = torch.nn.Parameter(torch.randn(G, DEC_DIM) * 0.02)
        self.decoder_blocks = torch.nn.ModuleList([Block(DEC_DIM, DEC_HEADS) for _ in range(DEC_DEPTH)])
        self.decoder_norm = torch.nn.LayerNorm(DEC_DIM, eps=1e-6)
        self.decoder_pred = torch.nn.ModuleDict(
            {g: torch.nn.Linear(DEC_DIM, PATCH * PATCH * c) for g, c in GROUPS.items()})

    def forward(self, xs, ids_keep, ids_restore, mask):
        # Encoder on the visible group tokens (token t = g*L + l).
        tokens = torch.cat([self.patch_embed[g](xs[g]) + self.pos_embed[:, 1:] + self.group_embed[i]
                            for i, g in enumerate(GROUPS)], dim=1)                       # [B, T, D]
        x = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, DIM))         # [B, K, D]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        # Decoder: visible tokens back in place among mask tokens (the MAE reference's unshuffle).
        y = self.decoder_embed(x)                                                        # [B, 1+K, Dd]
        mask_tokens = self.mask_token.expand(y.shape[0], T - KEEP, -1)
        full = torch.cat([y[:, 1:], mask_tokens], dim=1)
        full = torch.gather(full, 1, ids_restore.unsqueeze(-1).expand(-1, -1, DEC_DIM))  # [B, T, Dd]
        full = full + torch.cat([self.decoder_pos_embed[:, 1:] + self.decoder_group_embed[i]
                                 for i in range(G)], dim=1)
        x = torch.cat([y[:, :1] + self.decoder_pos_embed[:, :1], full], dim=1)
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)[:, 1:]
        # Loss: per group, MSE of normalized target patches over that group's hidden tokens.
        per_group = []
        for i, g in enumerate(GROUPS):
            pred = self.decoder_pred[g](x[:, i * L:(i + 1) * L])                        # [B, L, p*p*C]
            target = patchify(xs[g])
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)  # unbiased, as the MAE reference
            target = (target - mean) / (var + 1.0e-6) ** 0.5
            err = ((pred - target) ** 2).mean(dim=-1)                                   # [B, L]
            m = mask[:, i * L:(i + 1) * L]
            per_group.append((err * m).sum() / m.sum())
        return torch.stack(per_group).mean(), torch.stack(per_group)


def randomize(module):
    with torch.no_grad():  # non-trivial norms and biases so their gradients carry real values
        for name, p in module.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
        for p in module.parameters():
            p.copy_(p.float().double())


def f32(a):
    return a.detach().numpy().astype(np.float32)


model = MAE()
randomize(model)
xs = {g: torch.randn(B, c, IMG, IMG).float().double() for g, c in GROUPS.items()}
noise = torch.rand(B, T)
ids_shuffle = torch.argsort(noise, dim=1)
ids_restore = torch.argsort(ids_shuffle, dim=1)
ids_keep = ids_shuffle[:, :KEEP]
mask = torch.ones(B, T)
mask[:, :KEEP] = 0
mask = torch.gather(mask, 1, ids_restore)

loss, per_group = model(xs, ids_keep, ids_restore, mask)
loss.backward()

tensors = {"loss": f32(loss.reshape(1)), "per_group": f32(per_group), "ids_keep": ids_keep.numpy().astype(np.int64),
           "ids_restore": ids_restore.numpy().astype(np.int64), "mask": f32(mask)}
for g, x in xs.items():
    tensors[f"input.{g}"] = f32(x)
for name, p in model.named_parameters():
    tensors[f"w.{name}"] = f32(p)
    tensors[f"grad.{name}"] = f32(p.grad)
for name, b in model.named_buffers():
    tensors[f"w.{name}"] = f32(b)
st_io.save(os.path.join(os.path.dirname(__file__), "mae_golden.safetensors"), tensors,
           {"made_by": "tests/golden/make_mae_golden.py", "torch": torch.__version__})
print("wrote", len(tensors), "tensors; loss", float(loss), "per group", per_group.tolist())
