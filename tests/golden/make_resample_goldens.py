#!/usr/bin/python3
"""Generate tests/golden/resample_goldens.txt: PyTorch's bilinear resize (align_corners=False).

Run with the system interpreter (Debian python3-torch):

    /usr/bin/python3 tests/golden/make_resample_goldens.py

tests/data/test_readers.cpp rebuilds each input from the formula below (exact in float32), resizes
it with loom::data::resize_bilinear and compares with the stored output.

Input formula, for a [C, h, w] input:  x[c, i, j] = ((c * 131 + i * 31 + j * 17) % 97) / 8 - 5

File format (plain text, '#' starts a comment line):

    case <C> <h> <w> <H> <W>
    f32 <C*H*W values, row-major, %.9g: the float32 input resized in float32>
    f64 <C*H*W values, row-major, %.17g: the same input as float64, resized in float64>
    end

(PyTorch rounds the scale in/out to the tensor's type, so the two differ by more than rounding.)
"""
import os

import torch

CASES = [
    (1, 1, 1, 3, 5),      # a single pixel spreads everywhere (edge clamping)
    (2, 3, 5, 7, 4),      # upsample one axis, downsample the other
    (1, 10, 10, 20, 20),  # 2x, as 60 m -> 120 px BigEarthNet bands
    (1, 6, 6, 36, 36),    # 6x, as 20 px -> 120 px
    (1, 7, 7, 23, 13),    # odd sizes
    (1, 225, 9, 7, 5),    # strong downsampling
    (3, 97, 1, 1, 4),     # one-pixel extents
]


def make_input(c, h, w):
    ci = torch.arange(c).view(c, 1, 1)
    ii = torch.arange(h).view(1, h, 1)
    jj = torch.arange(w).view(1, 1, w)
    return (((ci * 131 + ii * 31 + jj * 17) % 97).to(torch.float32) / 8.0 - 5.0)


def main():
    out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resample_goldens.txt")
    lines = ["# torch.nn.functional.interpolate(x[None], size=(H, W), mode='bilinear', align_corners=False)",
             f"# torch {torch.__version__}; regenerate with tests/golden/make_resample_goldens.py"]
    for c, h, w, H, W in CASES:
        lines.append(f"case {c} {h} {w} {H} {W}")
        for tag, dtype, fmt in (("f32", torch.float32, "{:.9g}"), ("f64", torch.float64, "{:.17g}")):
            x = make_input(c, h, w).to(dtype)
            y = torch.nn.functional.interpolate(x[None], size=(H, W), mode="bilinear", align_corners=False)[0]
            values = [fmt.format(v) for v in y.reshape(-1).tolist()]
            lines.append(tag)
            for k in range(0, len(values), 10):
                lines.append(" ".join(values[k:k + 10]))
        lines.append("end")
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
