#!/usr/bin/env python3
"""Writes a synthetic image folder (CLASS/NNNNN.png) for measuring how fast poisonscope loads
a large folder. Standard library only (zlib + struct): no Pillow, no numpy.

    python3 benches/make_image_folder.py OUT --images 60000 --size 28 --classes 10
    python3 benches/make_image_folder.py OUT --images 10000 --size 256 --rgb

Each class holds images drawn from 32 distinct smooth patterns with noise (PNG-compressed
like photographs are, not like flat colour), written round-robin: decoding cost is that of
real images of that size; the folder is deterministic.
"""
import argparse
import os
import random
import struct
import zlib


def png(width, height, channels, rows):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    color = 0 if channels == 1 else 2
    raw = b"".join(b"\x00" + row for row in rows)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def pattern(size, channels, seed):
    rng = random.Random(seed)
    fx, fy, phase = rng.uniform(0.5, 3), rng.uniform(0.5, 3), rng.randrange(256)
    rows = []
    for y in range(size):
        row = bytearray()
        for x in range(size):
            base = (phase + int(255 * ((x * fx + y * fy) / (2 * size)))) % 256
            for c in range(channels):
                row.append((base + 40 * c + rng.randrange(24)) % 256)
        rows.append(bytes(row))
    return png(size, size, channels, rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--images", type=int, default=60000)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--rgb", action="store_true")
    args = parser.parse_args()
    channels = 3 if args.rgb else 1
    patterns = [
        [pattern(args.size, channels, 1000 * c + k) for k in range(32)] for c in range(args.classes)
    ]
    for c in range(args.classes):
        os.makedirs(os.path.join(args.out, f"class{c}"), exist_ok=True)
    for i in range(args.images):
        c = i % args.classes
        path = os.path.join(args.out, f"class{c}", f"{i:06d}.png")
        with open(path, "wb") as f:
            f.write(patterns[c][(i // args.classes) % 32])
    print(f"wrote {args.images} images of {args.size}x{args.size}x{channels} to {args.out}")


if __name__ == "__main__":
    main()
