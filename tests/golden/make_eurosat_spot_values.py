#!/usr/bin/python3
"""Prints spot values of the real EuroSAT-MS patches in ../shared/data/eurosat-ms, read with
rasterio (independently of loom), for tests/data/test_image_folder.cpp. Run with the system
interpreter: /usr/bin/python3 tests/golden/make_eurosat_spot_values.py"""
import os
import rasterio

root = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "eurosat-ms", "EuroSAT_MS")
pixels = [(0, 0), (63, 63), (17, 40)]  # (row, col)
for cls, name in [("AnnualCrop", "AnnualCrop_1"), ("Pasture", "Pasture_300"), ("SeaLake", "SeaLake_3000")]:
    with rasterio.open(os.path.join(root, cls, name + ".tif")) as f:
        a = f.read()  # [bands, H, W]
        print(f"// {cls}/{name}.tif: {a.shape}, {a.dtype}")
        for band in (0, 3, 12):
            for (r, c) in pixels:
                print(f'{{"{cls}/{name}.tif", {band}, {r}, {c}, {int(a[band, r, c])}}},')
