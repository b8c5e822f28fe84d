#!/usr/bin/env python3
"""Writes a harder 28×28 grayscale set (MNIST IDX files) from the embedded demo digits, to check
the detectors' decisions beyond clean digits (docs/detection.md, issue 28). Every class gets a
natural second style (a quarter of its images inverted and thickened), ±3-pixel shifts, a random
9×9 occlusion on half the images and Gaussian noise σ 45: clean accuracy falls to 86–88 % and clean
classes split in two on their own. Deterministic (seed 7). Needs numpy.

    python3 benches/make_hard_digits.py OUT_DIR
    poisonscope sweep GRID.toml --out DIR      # with [base.dataset] source = "OUT_DIR"
"""
import gzip
import os
import struct
import sys

import numpy as np

SRC = os.path.join(os.path.dirname(__file__), "..", "assets", "mnist")


def read(name, images):
    data = gzip.open(os.path.join(SRC, name)).read()
    if images:
        n, h, w = struct.unpack(">III", data[4:16])
        return np.frombuffer(data, np.uint8, offset=16).reshape(n, h, w).astype(np.float32)
    return np.frombuffer(data, np.uint8, offset=8)


def write(out, name, arr, images):
    with gzip.open(os.path.join(out, name), "wb") as f:
        if images:
            f.write(struct.pack(">IIII", 2051, len(arr), 28, 28))
        else:
            f.write(struct.pack(">II", 2049, len(arr)))
        f.write(arr.astype(np.uint8).tobytes())


def harden(x, rng):
    out = np.empty_like(x)
    for i, im in enumerate(x):
        dy, dx = rng.integers(-3, 4, 2)
        im = np.roll(np.roll(im, dy, 0), dx, 1)
        if rng.random() < 0.25:  # the second style: thick strokes, inverted
            thick = im.copy()
            for a, b in [(0, 1), (1, 0), (0, -1), (-1, 0)]:
                thick = np.maximum(thick, np.roll(np.roll(im, a, 0), b, 1))
            im = 255 - thick * 0.8
        if rng.random() < 0.5:
            y0, x0 = rng.integers(0, 20, 2)
            im[y0:y0 + 9, x0:x0 + 9] = rng.uniform(0, 255)
        im = im + rng.normal(0, 45, im.shape)
        out[i] = np.clip(im, 0, 255)
    return out


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    for part in ["train", "t10k"]:
        x = read(f"{part}-images-idx3-ubyte.gz", True)
        y = read(f"{part}-labels-idx1-ubyte.gz", False)
        write(out, f"{part}-images-idx3-ubyte.gz", harden(x, rng), True)
        write(out, f"{part}-labels-idx1-ubyte.gz", y, False)


if __name__ == "__main__":
    main()
