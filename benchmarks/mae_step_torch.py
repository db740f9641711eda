#!/usr/bin/python3
"""The MAE training step of benchmarks/bench_mae_step.cpp in plain PyTorch (fp32), for the
side-by-side comparison of benchmarks/compare_torch.sh. Prints one JSON line.

    /usr/bin/python3 benchmarks/mae_step_torch.py --config b --mode pretrain --threads 2 [--expect-params N]
    python3 benchmarks/mae_step_torch.py --device cuda --precision bf16 --batch 256   (GPU, eager)

The model mirrors loom's (include/loom/models/{encoder,mae,classifier}.hpp) layer for layer, so the
parameter counts are equal (--expect-params asserts it against loom's count):
  * group tokens: S1 (2 bands) and S2 (12 bands) each get their own patch embedding, a Linear over
    (channel, row, column)-flattened p x p patches; fixed 2-D sin-cos position embedding (a buffer),
    a learned group embedding [G, D] and a cls token;
  * pre-norm ViT blocks (LayerNorm eps 1e-6, fused qkv with bias, exact GELU, MLP ratio 4);
  * pretrain: the default mask of loom's mae_pretrain, mask ratio 0.75 over the G*L group tokens
    with each location visible in at most one group (K = round(0.25 G L) visible tokens); decoder
    (decoder_embed, mask token, sin-cos position + group embeddings, blocks, norm, one prediction
    Linear per group), loss = mean over groups of the norm-pix MSE on hidden tokens;
  * finetune: all tokens, average pooling over the patch tokens, fc_norm, 19-class head, BCE;
  * inference: the fine-tuning model's forward under torch.no_grad().
Training steps: zero_grad, forward, loss, backward, clip_grad_norm_(1.0), AdamW step.
Attention is softmax(q k^T / sqrt(Dh)) v written out (PyTorch 1.13, the CPU baseline, has no fused
scaled_dot_product_attention); with --sdpa (the default on CUDA when PyTorch has it) it is
F.scaled_dot_product_attention, PyTorch's fused flash/cuDNN kernels — the eager baseline a GPU user
would run. --precision bf16 runs forward and backward under torch.autocast(bfloat16) with fp32
master weights and optimizer state (loom's mixed precision). On CUDA the step is timed between
torch.cuda.synchronize() calls and the peak is torch.cuda.max_memory_allocated().
"""
import argparse
import contextlib
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {
    # name: (encoder dim, depth, heads, decoder dim, depth, heads, image, patch, batch)
    "a": (128, 4, 4, 128, 2, 4, 64, 8, 64),   # mae_pretrain's default CPU model (nano)
    "b": (192, 6, 3, 96, 2, 4, 120, 8, 32),   # the (mae_pretrain --model 192x6x3, decoder auto)
}
GROUPS = [("s1", 2), ("s2", 12)]
NUM_CLASSES = 19


def sincos_pos_embed_2d(dim, grid, cls_token):
    """MAE's 2-D sin-cos embedding [1 + grid^2, dim] (first row zeros for the cls token)."""
    def one_d(d, pos):
        omega = torch.arange(d // 2, dtype=torch.float64) / (d / 2.0)
        omega = 1.0 / 10000 ** omega
        out = pos.reshape(-1)[:, None] * omega[None, :]
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)
    gh = torch.arange(grid, dtype=torch.float64)
    gw = torch.arange(grid, dtype=torch.float64)
    ww, hh = torch.meshgrid(gw, gh, indexing="xy")
    emb = torch.cat([one_d(dim // 2, ww), one_d(dim // 2, hh)], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=torch.float64), emb], dim=0)
    return emb.float()


def patchify(x, p):
    """[B, C, H, W] -> [B, (H/p)(W/p), C p p], flattened in (channel, row, column) order."""
    B, C, H, W = x.shape
    h, w = H // p, W // p
    return x.reshape(B, C, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, C * p * p)


USE_SDPA = False  # set by main(): F.scaled_dot_product_attention instead of the written-out softmax


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, D = x.shape
        H = self.heads
        qkv = self.qkv(x).reshape(B, N, 3, H, D // H).permute(2, 0, 3, 1, 4)  # [3, B, H, N, Dh]
        q, k, v = qkv[0], qkv[1], qkv[2]
        if USE_SDPA:
            o = F.scaled_dot_product_attention(q, k, v)                       # [B, H, N, Dh]
        else:
            attn = (q @ k.transpose(-2, -1)) * (D // H) ** -0.5
            o = attn.softmax(dim=-1) @ v                                      # [B, H, N, Dh]
        return self.proj(o.transpose(1, 2).reshape(B, N, D))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    def __init__(self, dim, depth, heads, image, patch, final_norm=True):
        super().__init__()
        self.patch, self.dim, self.grid = patch, dim, image // patch
        self.patch_embed = nn.ModuleDict({n: nn.Linear(c * patch * patch, dim) for n, c in GROUPS})
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.register_buffer("pos_embed", sincos_pos_embed_2d(dim, self.grid, True)[None])  # [1, 1 + L, D]
        self.group_embed = nn.Parameter(torch.randn(len(GROUPS), dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6) if final_norm else None

    def embed(self, images):
        """[B, G*L, D]: every group's tokens, group-major."""
        pos = self.pos_embed[:, 1:]
        parts = [self.patch_embed[n](patchify(x, self.patch)) + pos + self.group_embed[g].view(1, 1, -1)
                 for g, ((n, _), x) in enumerate(zip(GROUPS, images))]
        return torch.cat(parts, dim=1)

    def run_blocks(self, tokens):
        B = tokens.shape[0]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(B, -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return x


class MAE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D, depth, heads, Dd, ddepth, dheads, image, patch, _ = cfg
        self.encoder = Encoder(D, depth, heads, image, patch)
        L = self.encoder.grid ** 2
        self.L, self.patch = L, patch
        self.decoder_embed = nn.Linear(D, Dd)
        self.mask_token = nn.Parameter(torch.randn(1, 1, Dd) * 0.02)
        self.register_buffer("decoder_pos_embed", sincos_pos_embed_2d(Dd, self.encoder.grid, True)[None])
        self.decoder_group_embed = nn.Parameter(torch.randn(len(GROUPS), Dd) * 0.02)
        self.decoder_blocks = nn.ModuleList([Block(Dd, dheads) for _ in range(ddepth)])
        self.decoder_norm = nn.LayerNorm(Dd, eps=1e-6)
        self.decoder_pred = nn.ModuleDict({n: nn.Linear(Dd, patch * patch * c) for n, c in GROUPS})

    def mask_plan(self, B, device):
        """Disjoint masking: K = round(0.25 G L) locations, each visible in one random group."""
        G, L = len(GROUPS), self.L
        T = G * L
        K = int(math.floor(0.25 * T + 0.5))
        locs = torch.rand(B, L).argsort(dim=1)[:, :K]                   # [B, K]
        groups = torch.randint(0, G, (B, K))
        ids_keep = groups * L + locs                                     # [B, K]
        noise = torch.rand(B, T)
        noise.scatter_(1, ids_keep, -1.0)                                # visible tokens sort first
        ids_shuffle = noise.argsort(dim=1)
        ids_keep = ids_shuffle[:, :K]
        ids_restore = ids_shuffle.argsort(dim=1)
        mask = torch.ones(B, T)
        mask[:, :K] = 0
        mask = torch.gather(mask, 1, ids_restore)                        # [B, T], 1 = hidden
        return ids_keep.to(device), ids_restore.to(device), mask.to(device)

    def forward(self, images, ids_keep, ids_restore, mask):
        enc = self.encoder
        tokens = enc.embed(images)                                       # [B, T, D]
        B, T, D = tokens.shape
        visible = torch.gather(tokens, 1, ids_keep[..., None].expand(-1, -1, D))
        latent = enc.norm(enc.run_blocks(visible))                       # [B, 1 + K, D]
        y = self.decoder_embed(latent)                                   # [B, 1 + K, Dd]
        Dd = y.shape[-1]
        K = ids_keep.shape[1]
        full = torch.cat([y[:, 1:], self.mask_token.expand(B, T - K, -1)], dim=1)
        full = torch.gather(full, 1, ids_restore[..., None].expand(-1, -1, Dd))
        pos = self.decoder_pos_embed[:, 1:]
        full = full + torch.cat([pos + self.decoder_group_embed[g].view(1, 1, -1) for g in range(len(GROUPS))], dim=1)
        x = torch.cat([y[:, :1] + self.decoder_pos_embed[:, :1], full], dim=1)
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)[:, 1:]
        L = self.L
        total = 0.0
        for g, ((n, _), img) in enumerate(zip(GROUPS, images)):
            pred = self.decoder_pred[n](x[:, g * L:(g + 1) * L])         # [B, L, p p C_g]
            target = patchify(img, self.patch)
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, unbiased=False, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
            m = mask[:, g * L:(g + 1) * L]
            loss = ((pred - target) ** 2).mean(dim=-1)
            total = total + (loss * m).sum() / m.sum()
        return total / len(GROUPS)


class Classifier(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D, depth, heads, *_rest = cfg
        image, patch = cfg[6], cfg[7]
        self.encoder = Encoder(D, depth, heads, image, patch, final_norm=False)
        self.fc_norm = nn.LayerNorm(D, eps=1e-6)
        self.head = nn.Linear(D, NUM_CLASSES)

    def forward(self, images):
        x = self.encoder.run_blocks(self.encoder.embed(images))          # [B, 1 + T, D]
        return self.head(self.fc_norm(x[:, 1:].mean(dim=1)))             # [B, 19]


def param_groups(model, wd):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.ndim <= 1 or name.endswith(".bias") or "token" in name or "group_embed" in name
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def flops_per_step(cfg, mode, K):
    """Matmul FLOPs, the formula of bench_mae_step.cpp."""
    D, depth, heads, Dd, ddepth, dheads, image, patch, B = cfg
    L = (image // patch) ** 2
    G = len(GROUPS)
    block = lambda n, d: 2 * B * n * d * 12 * d + 4 * B * n * n * d
    embed = sum(2 * B * L * c * patch * patch * D for _, c in GROUPS)
    if mode == "pretrain":
        fwd = (embed + depth * block(1 + K, D) + 2 * B * (1 + K) * D * Dd + ddepth * block(1 + G * L, Dd)
               + sum(2 * B * L * Dd * c * patch * patch for _, c in GROUPS))
    else:
        fwd = embed + depth * block(1 + G * L, D) + 2 * B * D * NUM_CLASSES
    return fwd if mode == "inference" else 3 * fwd - embed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="b", choices=sorted(CONFIGS))
    ap.add_argument("--mode", default="pretrain", choices=["pretrain", "finetune", "inference"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--expect-params", type=int, default=0, help="loom's parameter count: assert equal")
    ap.add_argument("--label", default="pytorch")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--batch", type=int, default=0, help="override the configuration's batch size")
    ap.add_argument("--sdpa", default="auto", choices=["auto", "on", "off"],
                    help="fused scaled_dot_product_attention (auto: on for CUDA when available)")
    args = ap.parse_args()

    global USE_SDPA
    has_sdpa = hasattr(F, "scaled_dot_product_attention")
    USE_SDPA = args.sdpa == "on" or (args.sdpa == "auto" and args.device == "cuda" and has_sdpa)
    if USE_SDPA and not has_sdpa:
        sys.exit(f"mae_step_torch: --sdpa on needs PyTorch >= 2.0 (this is {torch.__version__})")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("mae_step_torch: --device cuda but torch.cuda.is_available() is False")
    dev = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = CONFIGS[args.config]
    if args.batch:
        cfg = cfg[:8] + (args.batch,)
    B, image = cfg[8], cfg[6]
    images = [(torch.rand(B, c, image, image) * 2 - 1).to(dev) for _, c in GROUPS]
    labels = (torch.rand(B, NUM_CLASSES) < 0.2).float().to(dev)
    model = (MAE(cfg) if args.mode == "pretrain" else Classifier(cfg)).to(dev)
    autocast = (torch.autocast(device_type=args.device, dtype=torch.bfloat16) if args.precision == "bf16"
                else contextlib.nullcontext())
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    params = [p for p in model.parameters() if p.requires_grad]
    count = sum(p.numel() for p in params)
    print(f"mae_step_torch: {args.mode} config {args.config}: PyTorch parameters {count}, loom {args.expect_params or '?'}",
          file=sys.stderr)
    if args.expect_params:
        assert count == args.expect_params, f"parameter counts differ: PyTorch {count}, loom {args.expect_params}"

    K = int(math.floor(0.25 * len(GROUPS) * (image // cfg[7]) ** 2 + 0.5))
    if args.mode == "inference":
        model.eval()

        def step():
            with torch.no_grad(), autocast:
                model(images)
    else:
        model.train()
        opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4,
                                betas=(0.9, 0.95) if args.mode == "pretrain" else (0.9, 0.999), eps=1e-8)

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast:
                if args.mode == "pretrain":
                    loss = model(images, *model.mask_plan(B, dev))
                else:
                    loss = F.binary_cross_entropy_with_logits(model(images), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()

    for _ in range(args.warmup):
        step()
    sync()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    median = sorted(times)[len(times) // 2]
    flops = flops_per_step(cfg, args.mode, K)
    print(json.dumps({
        "impl": args.label, "config": args.config, "mode": args.mode, "batch": B, "threads": args.threads,
        "params": count, "img_per_s": round(B / median, 3), "step_ms_median": round(1e3 * median, 2),
        "step_ms_mean": round(1e3 * sum(times) / len(times), 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "gflop_per_step": round(flops * 1e-9, 3), "gflops": round(flops * 1e-9 / median, 2),
        "visible_tokens": K, "torch": torch.__version__, "device": args.device, "precision": args.precision,
        "sdpa": USE_SDPA,
        "gpu_peak_mib": (round(torch.cuda.max_memory_allocated() / 2**20, 1) if args.device == "cuda" else None),
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "cpu_s": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 2)}))


if __name__ == "__main__":
    main()
