#!/usr/bin/python3
"""Generate tests/golden/data_goldens.txt: what the dataset readers must return for the real samples
in ../shared/data (BigEarthNet-MM pairs, the SEN12MS patch) and the torchgeo fixtures.

Run with the system interpreter (Debian python3-rasterio, python3-torch, python3-numpy):

    /usr/bin/python3 tests/golden/make_data_goldens.py [shared-data-dir]

Everything here is computed independently of loom: rasterio reads the GeoTIFFs, torch's
interpolate(mode='bilinear', align_corners=False) resizes the 20 m / 60 m bands to 120 x 120, and the
label mappings are written out below from the datasets' documentation.

File format (plain text, '#' starts a comment line), one block per sample:

    sample <spec-relative-folder> <options> <index> <name>   options are the spec's query ('-' for none)
    labels <K ints 0/1>
    band <modality s1|s2> <channel> <sum> <sum of squares>  over all pixels, float32 data summed in double
    pixel <modality> <channel> <row> <col> <value>
    end
"""
import glob
import json
import os
import sys

import numpy as np
import rasterio
import torch

# ---- BigEarthNet -----------------------------------------------------------------------------------
S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
CLASSES_19 = [
    "Urban fabric", "Industrial or commercial units", "Arable land", "Permanent crops", "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas", "Broad-leaved forest", "Coniferous forest", "Mixed forest",
    "Natural grassland and sparsely vegetated areas", "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub", "Beaches, dunes, sands", "Inland wetlands", "Coastal wetlands",
    "Inland waters", "Marine waters",
]
# The BigEarthNet-19 nomenclature: which 19-class name each original CORINE label becomes.
TO_19 = {
    "Continuous urban fabric": "Urban fabric",
    "Discontinuous urban fabric": "Urban fabric",
    "Industrial or commercial units": "Industrial or commercial units",
    "Non-irrigated arable land": "Arable land",
    "Permanently irrigated land": "Arable land",
    "Rice fields": "Arable land",
    "Vineyards": "Permanent crops",
    "Fruit trees and berry plantations": "Permanent crops",
    "Olive groves": "Permanent crops",
    "Annual crops associated with permanent crops": "Permanent crops",
    "Pastures": "Pastures",
    "Complex cultivation patterns": "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation":
        "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas": "Agro-forestry areas",
    "Broad-leaved forest": "Broad-leaved forest",
    "Coniferous forest": "Coniferous forest",
    "Mixed forest": "Mixed forest",
    "Natural grassland": "Natural grassland and sparsely vegetated areas",
    "Sparsely vegetated areas": "Natural grassland and sparsely vegetated areas",
    "Moors and heathland": "Moors, heathland and sclerophyllous vegetation",
    "Sclerophyllous vegetation": "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland/shrub": "Transitional woodland, shrub",
    "Beaches, dunes, sands": "Beaches, dunes, sands",
    "Inland marshes": "Inland wetlands",
    "Peatbogs": "Inland wetlands",
    "Salt marshes": "Coastal wetlands",
    "Salines": "Coastal wetlands",
    "Water courses": "Inland waters",
    "Water bodies": "Inland waters",
    "Coastal lagoons": "Marine waters",
    "Estuaries": "Marine waters",
    "Sea and ocean": "Marine waters",
}
# Spot-check positions on a 120 x 120 patch: corners, edges and inner points.
PIXELS_120 = [(0, 0), (0, 119), (119, 0), (119, 119), (37, 81), (60, 60), (5, 113), (101, 17), (59, 0), (1, 1)]

# ---- SEN12MS --------------------------------------------------------------------------------------
# Simplified IGBP scheme of the SEN12MS reference code: IGBP code -> class index.
IGBP_SIMPLE = {1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 1, 7: 1, 8: 2, 9: 2, 10: 3, 11: 4, 12: 5, 14: 5, 13: 6, 15: 7,
               16: 8, 17: 9}
# The reference code's 10 bands, as 1-based band indexes of the 13-band s2 file.
SEN12MS_S2_10 = [2, 3, 4, 8, 5, 6, 7, 9, 12, 13]
PIXELS_256 = [(0, 0), (0, 255), (255, 0), (255, 255), (100, 200), (128, 3), (17, 77)]
PIXELS_64 = [(0, 0), (0, 63), (63, 0), (63, 63), (31, 32), (10, 50)]


def read(path):
    with rasterio.open(path) as r:
        return r.read().astype(np.float32)  # [C, H, W]


def resize(band, size):
    t = torch.from_numpy(band)[None, None]
    return torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear",
                                           align_corners=False)[0, 0].numpy()


def emit_bands(out, modality, planes, pixels):
    for c, plane in enumerate(planes):
        p = plane.astype(np.float64)
        out.append(f"band {modality} {c} {p.sum():.17g} {(p * p).sum():.17g}")
    for c, plane in enumerate(planes):
        for (i, j) in pixels:
            out.append(f"pixel {modality} {c} {i} {j} {float(plane[i, j]):.9g}")


def bigearthnet_labels(names):
    hot = [0] * 19
    for n in names:
        if n in TO_19:
            hot[CLASSES_19.index(TO_19[n])] = 1
    return hot


def bigearthnet_block(out, folder, options, index, s2_dir, s1_dir, size, pixels):
    s2_name = os.path.basename(s2_dir)
    s1_name = os.path.basename(s1_dir)
    meta = json.load(open(os.path.join(s2_dir, s2_name + "_labels_metadata.json")))
    out.append(f"sample {folder} {options} {index} {s2_name}")
    out.append("labels " + " ".join(map(str, bigearthnet_labels(meta["labels"]))))
    s2 = []
    for b in S2_BANDS:
        band = read(os.path.join(s2_dir, f"{s2_name}_{b}.tif"))[0]
        s2.append(band if band.shape == (size, size) else resize(band, size))
    s1 = []
    for b in ["VV", "VH"]:
        band = read(os.path.join(s1_dir, f"{s1_name}_{b}.tif"))[0]
        s1.append(band if band.shape == (size, size) else resize(band, size))
    emit_bands(out, "s2", s2, pixels)
    emit_bands(out, "s1", s1, pixels)
    out.append("end")


def sen12ms_labels(lc_path, threshold=0.1):
    igbp = read(lc_path)[0].astype(np.int64)
    counts = [0] * 10
    for code, cls in IGBP_SIMPLE.items():
        counts[cls] += int((igbp == code).sum())
    return [1 if c >= threshold * igbp.size else 0 for c in counts]


def sen12ms_block(out, folder, options, index, patch_id, s1_path, s2_path, lc_path, pixels):
    out.append(f"sample {folder} {options} {index} {patch_id}")
    out.append("labels " + " ".join(map(str, sen12ms_labels(lc_path))))
    if s1_path:  # the reference code: NaN -> 0, clip to [-25, 0] dB
        s1 = np.clip(np.nan_to_num(read(s1_path)), -25, 0)
        emit_bands(out, "s1", list(s1), pixels)
    if s2_path:  # the reference code: its 10 bands, clipped to [0, 10000]
        with rasterio.open(s2_path) as r:
            s2 = np.clip(r.read(SEN12MS_S2_10).astype(np.float32), 0, 10000)
        emit_bands(out, "s2", list(s2), pixels)
    out.append("end")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    data = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "..", "shared", "data")
    data = os.path.abspath(data)
    out = ["# expected reader output for ../shared/data; regenerate with tests/golden/make_data_goldens.py",
           f"# rasterio {rasterio.__version__}, torch {torch.__version__}, numpy {np.__version__}"]

    # BigEarthNet-MM: all 6 real pairs, ordered by S2 name (the reader's order without a split).
    ben = os.path.join(data, "bigearthnet-mm")
    pairs = {}
    for s1_dir in sorted(glob.glob(os.path.join(ben, "BigEarthNet-S1-v1.0", "*"))):
        name = os.path.basename(s1_dir)
        meta = json.load(open(os.path.join(s1_dir, name + "_labels_metadata.json")))
        pairs[meta["corresponding_s2_patch"]] = s1_dir
    for index, s2_name in enumerate(sorted(pairs)):
        bigearthnet_block(out, "bigearthnet-mm", "-", index, os.path.join(ben, "BigEarthNet-v1.0", s2_name),
                          pairs[s2_name], 120, PIXELS_120)

    # The torchgeo BigEarthNet fixture through its train split, every band resized to 2 x 2.
    fixture = os.path.join(data, "synthetic-torchgeo-bigearthnet-v1")
    options = "split=bigearthnet-train.csv&strict_sizes=0&size=2"
    rows = [line.strip().split(",") for line in open(os.path.join(fixture, "bigearthnet-train.csv")) if line.strip()]
    for index, (s2_name, s1_name) in enumerate(rows):
        bigearthnet_block(out, "synthetic-torchgeo-bigearthnet-v1", options, index,
                          os.path.join(fixture, "BigEarthNet-v1.0", s2_name),
                          os.path.join(fixture, "BigEarthNet-S1-v1.0", s1_name), 2, [(0, 0), (0, 1), (1, 0), (1, 1)])

    # SEN12MS: the real patch (s1 + lc, no s2).
    s12 = os.path.join(data, "sen12ms", "ROIs1158_spring")
    sen12ms_block(out, "sen12ms", "-", 0, "ROIs1158_spring_1_p30",
                  os.path.join(s12, "s1_1", "ROIs1158_spring_s1_1_p30.tif"), None,
                  os.path.join(s12, "lc_1", "ROIs1158_spring_lc_1_p30.tif"), PIXELS_256)

    # The torchgeo SEN12MS fixture (64 x 64 triplets), in the reader's order: season, scene, patch.
    fix = os.path.join(data, "synthetic-torchgeo-sen12ms")
    index = 0
    for season in sorted(d for d in os.listdir(fix) if d.startswith("ROIs")):
        for patch in (1, 2):
            f = lambda m: os.path.join(fix, season, f"{m}_1", f"{season}_{m}_1_p{patch}.tif")
            sen12ms_block(out, "synthetic-torchgeo-sen12ms", "size=64", index, f"{season}_1_p{patch}", f("s1"), f("s2"),
                          f("lc"), PIXELS_64)
            index += 1

    path = os.path.join(here, "data_goldens.txt")
    with open(path, "w") as fh:
        fh.write("\n".join(out) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
