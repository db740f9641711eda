#!/usr/bin/python3
"""Golden files for loom's safetensors reader and writer (tests/io/test_safetensors.cpp).

Run with the system interpreter (it has torch and numpy):  /usr/bin/python3 tests/golden/make_safetensors_golden.py

1. Makes tensors with PyTorch (F32, F64, BF16, F16 incl. subnormals/inf/NaN, I64, I32, BOOL, U8, a
   rank-0 and an empty tensor, a conv-shaped patch-embed weight) and writes them in the safetensors
   format *by hand* (struct + json; the `safetensors` package is not packaged for Debian), which makes
   this an independent writer for loom's reader to agree with:
     safetensors_torch.safetensors            header padded with spaces to 8 bytes as the reference
                                              implementation does, data sorted by element size, header
                                              keys in another order and __metadata__ last;
     safetensors_torch_unaligned.safetensors  the same tensors with an odd header length, so that no
                                              multi-byte tensor is aligned (loom must copy, not alias);
     safetensors_torch_expected.json          every value as the bits of its float64 (floats; exact),
                                              as an integer (ints), and PyTorch's bf16 rounding of it.
2. Verifies, with numpy as an independent reader, the file loom's writer produced
   (safetensors_loom.safetensors; the C++ test rewrites it when LOOM_WRITE_GOLDEN=1 and otherwise
   checks that loom still writes exactly these bytes): layout rules and every value, computed here
   from the same formulas the C++ test uses.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))

DTYPE_NAME = {torch.float32: "F32", torch.float64: "F64", torch.bfloat16: "BF16", torch.float16: "F16",
              torch.int64: "I64", torch.int32: "I32", torch.bool: "BOOL", torch.uint8: "U8"}
ELEMENT_SIZE = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "BF16": 2, "F16": 2, "U8": 1, "BOOL": 1}


def raw_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: take the bits
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().tobytes()  # little-endian host


def f64_bits(x):
    return "%016x" % struct.unpack("<Q", struct.pack("<d", float(x)))[0]


def torch_tensors():
    torch.manual_seed(20240607)
    half_specials = [0.0, -0.0, 1.0, 65504.0, 2.0**-24, 2.0**-14, math.inf, -math.inf, math.nan, 1 / 3, -2.5,
                     1e-5, 3.14159, -65504.0]
    return {
        "encoder.weight": torch.randn(7, 5),
        "encoder.bias": torch.randn(5),
        "decoder.pos": torch.randn(3, 11, dtype=torch.float64),
        "proj.bf16": torch.randn(2, 3, 4).bfloat16(),
        "head.f16": torch.tensor(half_specials, dtype=torch.float16),
        "ids": torch.tensor([-2**63, 2**63 - 1, 0, -1, 123456789012345, 42], dtype=torch.int64),
        "counts": torch.tensor([-2**31, 2**31 - 1, 0, 7], dtype=torch.int32),
        "mask": torch.tensor([True, False, True, True, False]),
        "pixels": torch.tensor([[0, 1, 127], [128, 254, 255]], dtype=torch.uint8),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "patch_embed.proj.weight": torch.randn(4, 2, 3, 3),
    }


def write_by_hand(path, tensors, data_order, header_order, metadata, pad_to_8, odd_length):
    offsets, buffer, pos = {}, bytearray(), 0
    for name in data_order:
        b = raw_bytes(tensors[name])
        offsets[name] = [pos, pos + len(b)]
        buffer += b
        pos += len(b)
    header = {}
    for name in header_order:
        t = tensors[name]
        header[name] = {"dtype": DTYPE_NAME[t.dtype], "shape": list(t.shape), "data_offsets": offsets[name]}
    header["__metadata__"] = metadata
    text = json.dumps(header).encode()  # Python's default separators: ", " and ": "
    if pad_to_8:
        text += b" " * ((8 - len(text) % 8) % 8)
    if odd_length and len(text) % 2 == 0:
        text += b" "
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(buffer))


def make_torch_goldens():
    tensors = torch_tensors()
    names = list(tensors)
    # The reference implementation's data order: larger elements first, then by name.
    data_order = sorted(names, key=lambda n: (-ELEMENT_SIZE[DTYPE_NAME[tensors[n].dtype]], n))
    header_order = sorted(names, key=lambda n: n[::-1])  # any order that is neither of the above
    metadata = {"format": "pt", "source": "make_safetensors_golden.py (torch %s)" % torch.__version__.split("a")[0]}
    write_by_hand(os.path.join(HERE, "safetensors_torch.safetensors"), tensors, data_order, header_order, metadata,
                  pad_to_8=True, odd_length=False)
    write_by_hand(os.path.join(HERE, "safetensors_torch_unaligned.safetensors"), tensors, header_order, names,
                  metadata, pad_to_8=False, odd_length=True)

    expected = {"__metadata__": metadata}
    for name, t in tensors.items():
        entry = {"dtype": DTYPE_NAME[t.dtype], "shape": list(t.shape)}
        flat = t.reshape(-1)
        if t.dtype.is_floating_point:
            entry["f64_bits"] = [f64_bits(x) for x in flat.double().tolist()]
            entry["bf16_bits"] = [int(x) & 0xFFFF for x in flat.to(torch.bfloat16).view(torch.int16).tolist()]
        else:
            entry["int"] = [int(x) for x in flat.tolist()]
        expected[name] = entry
    with open(os.path.join(HERE, "safetensors_torch_expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


# ---- the loom-written golden ------------------------------------------------------------------------
def v(k):
    """Dyadic values exact in F32, F64 and BF16 (the C++ test uses the same formula)."""
    return ((k * 37) % 101 - 50) / 16.0


def loom_expected():
    base = np.array([v(k) for k in range(15)]).reshape(3, 5)
    return {
        "weights.f32": ("F32", [5, 3], base.T.reshape(-1)),                       # written from a transposed view
        "weights.f64": ("F64", [2, 3, 4], np.array([v(k) / 64 + k for k in range(24)])),
        "weights.bf16": ("BF16", [7], np.array([v(2 * m) for m in range(7)])),    # written from a step-2 slice
        "steps.i64": ("I64", [4], [-2**63, 2**63 - 1, 10**15 + 7, -3]),
        "ids.i32": ("I32", [2, 2], [-7, 2**31 - 1, -7, 2**31 - 1]),              # written from an expanded row
        "mask.u8": ("U8", [9], [(k * 29) % 256 for k in range(9)]),
        "scalar": ("F32", [], [2.5]),
        "empty": ("F64", [0, 3], []),
    }


def verify_loom_golden(path):
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    text = blob[8:8 + n]
    assert n % 8 == 0, "header length %d is not a multiple of 8" % n
    assert text == text.rstrip(b" ") + b" " * (len(text) - len(text.rstrip(b" "))), "padding is not spaces"
    header = json.loads(text)
    keys = list(header)
    assert keys[0] == "__metadata__", "__metadata__ must come first, got %s" % keys
    assert header["__metadata__"] == {"format": "pt", "producer": "loom"}, header["__metadata__"]
    assert list(header["__metadata__"]) == sorted(header["__metadata__"]), "metadata keys not sorted"
    expected = loom_expected()
    tensor_keys = keys[1:]
    assert sorted(tensor_keys) == sorted(expected), tensor_keys
    want_order = sorted(expected, key=lambda k: (-ELEMENT_SIZE[expected[k][0]], k))
    assert tensor_keys == want_order, "tensor order %s, expected %s" % (tensor_keys, want_order)
    data = blob[8 + n:]
    pos = 0
    np_dtype = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4", "U8": "u1"}
    for key in tensor_keys:
        dtype, shape, values = expected[key]
        entry = header[key]
        assert entry["dtype"] == dtype and entry["shape"] == shape, (key, entry)
        begin, end = entry["data_offsets"]
        assert begin == pos, "%s starts at %d, expected %d (no gaps)" % (key, begin, pos)
        assert begin % ELEMENT_SIZE[dtype] == 0, "%s is not aligned" % key
        raw = data[begin:end]
        if dtype == "BF16":
            got = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            got = np.frombuffer(raw, np_dtype[dtype])
        want = np.array(values, dtype=got.dtype)
        assert got.shape == want.shape and np.array_equal(got, want), (key, got, want)
        pos = end
    assert pos == len(data), "buffer has %d bytes, tensors cover %d" % (len(data), pos)
    print("verified %s: %d tensors, header %d bytes" % (os.path.basename(path), len(tensor_keys), n))


if __name__ == "__main__":
    make_torch_goldens()
    print("wrote safetensors_torch*.safetensors and safetensors_torch_expected.json")
    loom_file = os.path.join(HERE, "safetensors_loom.safetensors")
    if os.path.exists(loom_file):
        verify_loom_golden(loom_file)
    else:
        print("no %s yet: run test_io with LOOM_WRITE_GOLDEN=1, then this script again" % loom_file)
        sys.exit(1)
