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
from torch_layers import Block, PatchEmbed, sincos_2d  # noqa: E402

torch.manual_seed(2207)
torch.set_default_dtype(torch.float64)
DIM, DEPTH, HEADS, PATCH, IMG, CLASSES, BATCH = 32, 2, 2, 8, 32, 19, 5
S1_CHANS, S2_CHANS = 2, 12


class VitClassifier(torch.nn.Module):
    """timm VisionTransformer(global_pool='avg', fc_norm=True): norm is Identity."""

    def __init__(self):
        super().__init__()
        self.patch_embed = PatchEmbed(S1_CHANS + S2_CHANS, DIM, PATCH)
        self.cls_token = torch.nn.Parameter(torch.randn(1, 1, DIM) * 0.02)
        self.pos_embed = torch.nn.Parameter(torch.from_numpy(sincos_2d(DIM, IMG // PATCH, True)).unsqueeze(0),
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
