#!/usr/bin/env python3
"""PyTorch's scaled_dot_product_attention on the shapes of bench_attention_gpu, per backend
(flash, cuDNN, memory-efficient), fp32 and bf16, forward / backward / both, median of CUDA-event
timings. Same FLOP formula as bench_attention_gpu: fwd = 4*BH*S*S*D, bwd = 2.5*fwd.
Writes CSV rows in bench_attention_gpu's format: impl,dtype,bh,seq,head_dim,fwd_ms,...
Usage: torch_sdpa.py [--reps N] [--bh N] [--csv FILE]"""
import argparse
import statistics
import sys

try:
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import torch.nn.functional as F
except ImportError as e:  # the GPU machines have torch; say what is missing elsewhere
    print(f"torch_sdpa.py: skipped: {e}")
    sys.exit(0)


def median_ms(reps, fn):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--bh", type=int, default=256)
    ap.add_argument("--csv", default="torch_sdpa.csv")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_sdpa.py: skipped: no CUDA device")
        return
    d, heads = 64, 16
    batch = args.bh // heads
    backends = {"torch_flash": SDPBackend.FLASH_ATTENTION, "torch_cudnn": SDPBackend.CUDNN_ATTENTION,
                "torch_efficient": SDPBackend.EFFICIENT_ATTENTION}
    rows = []
    for seq in (113, 451, 1025):
        for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            q, k, v = (torch.randn(batch, heads, seq, d, device="cuda", dtype=dtype, requires_grad=True)
                       for _ in range(3))
            d_o = torch.randn(batch, heads, seq, d, device="cuda", dtype=dtype)
            for name, backend in backends.items():
                try:
                    with sdpa_kernel(backend):
                        out = F.scaled_dot_product_attention(q, k, v)

                        def fwd():
                            with torch.no_grad():
                                F.scaled_dot_product_attention(q, k, v)

                        def bwd():
                            torch.autograd.grad(out, (q, k, v), d_o, retain_graph=True)

                        def both():
                            o = F.scaled_dot_product_attention(q, k, v)
                            torch.autograd.grad(o, (q, k, v), d_o)

                        rows.append((name, dtype_name, seq, median_ms(args.reps, fwd), median_ms(args.reps, bwd),
                                     median_ms(args.reps, both)))
                except RuntimeError as e:  # backend unavailable for this dtype (flash: no fp32)
                    print(f"{name} {dtype_name} seq {seq}: not available ({str(e).splitlines()[0][:80]})")
    with open(args.csv, "w") as f:
        f.write("impl,dtype,bh,seq,head_dim,fwd_ms,bwd_ms,fwdbwd_ms,fwd_tflops,bwd_tflops,fwdbwd_tflops\n")
        for name, dt, seq, fm, bm, tm in rows:
            ff = 4.0 * args.bh * seq * seq * d
            bf = 2.5 * ff
            line = (f"{name},{dt},{args.bh},{seq},{d},{fm:.4f},{bm:.4f},{tm:.4f},{ff / fm * 1e-9:.3f},"
                    f"{bf / bm * 1e-9:.3f},{(ff + bf) / tm * 1e-9:.3f}")
            f.write(line + "\n")
            print(line)


if __name__ == "__main__":
    main()
