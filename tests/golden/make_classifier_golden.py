#!/usr/bin/python3
"""Golden for loom's multi-label classifier (include/loom/models/classifier.hpp) from plain PyTorch.

timm is not installed, so this is a ViT written with timm's parameter names and timm's
global_pool='avg' forward (as timm builds it for MAE fine-tuning: `norm` is Identity, the patch
tokens are averaged without the cls token, then fc_norm and head):

    x = patch_embed(img) + pos_embed[:, 1:];  x = cat(cls_token + pos_embed[:, :1], x)
    x = blocks(x);  logits = head(fc_norm(x[:, 1:].mean(1)));  probs = sigmoid(logits)

Joint tokenization (one token per location over all 14 channels: S1 VV, VH then 12 S2 bands),
dim 32, depth 2, heads 2, patch 8, 32x32 images, 19 classes. Writes
tests/golden/classifier_golden.safetensors: the weights under their timm names prefixed "model."
(patch_embed.proj.weight in conv shape [D, C, p, p]; the fixed sin-cos pos_embed, stored as timm's
state_dict holds it), the inputs "input.s1" [B, 2, 32, 32] and "input.s2" [B, 12, 32, 32], and
"probs" [B, 19]. Weights and inputs are rounded to float32 and the model runs in float64, so every
stored probability is the float32 rounding of an exact-in-double result.
Run: /usr/bin/python3 tests/golden/make_classifier_golden.py
     /usr/bin/python3 tests/golden/make_classifier_golden.py --check <loom checkpoint>  (loom -> timm)
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import st_io  # noqa: E402

torch.manual_seed(2207)
torch.set_default_dtype(torch.float64)
DIM, DEPTH, HEADS, PATCH, IMG, CLASSES, BATCH = 32, 2, 2, 8, 32, 19, 5
S1_CHANS, S2_CHANS = 2, 12


def sincos_1d(dim, pos):
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(dim, grid):
    g = np.stack(np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64)), axis=0)
    g = g.reshape(2, 1, grid, grid)
    emb = np.concatenate([sincos_1d(dim // 2, g[0]), sincos_1d(dim // 2, g[1])], axis=1)
    return np.concatenate([np.zeros([1, dim]), emb], axis=0)  # cls position first, all zeros


class Attention(torch.nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(dim, dim * 3)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = (q @ k.transpose(-2, -1)) * (C // self.heads) ** -0.5
        return self.proj((a.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, C))


class Mlp(torch.nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = torch.nn.Linear(dim, hidden)
        self.fc2 = torch.nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(torch.nn.functional.gelu(self.fc1(x)))


class Block(torch.nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = torch.nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = torch.nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(torch.nn.Module):
    def __init__(self, chans):
        super().__init__()
        self.proj = torch.nn.Conv2d(chans, DIM, PATCH, PATCH)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VitClassifier(torch.nn.Module):
    """timm VisionTransformer(global_pool='avg', fc_norm=True): norm is Identity."""

    def __init__(self):
        super().__init__()
        self.patch_embed = PatchEmbed(S1_CHANS + S2_CHANS)
        self.cls_token = torch.nn.Parameter(torch.randn(1, 1, DIM) * 0.02)
        self.pos_embed = torch.nn.Parameter(torch.from_numpy(sincos_2d(DIM, IMG // PATCH)).unsqueeze(0),
                                            requires_grad=False)
        self.blocks = torch.nn.ModuleList([Block(DIM, HEADS) for _ in range(DEPTH)])
        self.fc_norm = torch.nn.LayerNorm(DIM, eps=1e-6)
        self.head = torch.nn.Linear(DIM, CLASSES)

    def forward(self, x):
        x = self.patch_embed(x) + self.pos_embed[:, 1:, :]
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.fc_norm(x[:, 1:].mean(dim=1)))


if len(sys.argv) == 3 and sys.argv[1] == "--check":
    # loom -> timm: load a checkpoint written by loom (MultiLabelClassifier::timm_state) strictly into
    # this timm-named model and compare its probabilities on the stored inputs with the golden's.
    golden = st_io.load(os.path.join(os.path.dirname(__file__), "classifier_golden.safetensors"))
    saved = st_io.load(sys.argv[2])
    model = VitClassifier()
    model.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float64)) for k, v in saved.items()}, strict=True)
    x = torch.from_numpy(np.concatenate([golden["input.s1"], golden["input.s2"]], axis=1)).double()
    with torch.no_grad():
        probs = torch.sigmoid(model(x)).numpy()
    err = float(np.abs(probs - golden["probs"]).max())
    print("max |probs - golden| =", err)
    sys.exit(0 if err <= 1e-6 else 1)

model = VitClassifier()
with torch.no_grad():
    for name, p in model.named_parameters():
        # Non-trivial norms and biases, a head loud enough to spread the probabilities.
        if name.endswith("bias") or "norm" in name:
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
        if name == "head.weight":
            p.copy_(torch.randn_like(p) * 0.5)
        p.copy_(p.float().double())
s1 = torch.randn(BATCH, S1_CHANS, IMG, IMG).float().double()
s2 = torch.randn(BATCH, S2_CHANS, IMG, IMG).float().double()
with torch.no_grad():
    probs = torch.sigmoid(model(torch.cat([s1, s2], dim=1)))

tensors = {"model." + n: t.detach().float().numpy() for n, t in model.state_dict().items()}
tensors["input.s1"] = s1.float().numpy()
tensors["input.s2"] = s2.float().numpy()
tensors["probs"] = probs.float().numpy()
st_io.save(os.path.join(os.path.dirname(__file__), "classifier_golden.safetensors"), tensors,
           {"made_by": "tests/golden/make_classifier_golden.py", "torch": torch.__version__})
print("wrote", len(tensors), "tensors; probs range", float(probs.min()), float(probs.max()))
