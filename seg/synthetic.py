"""An offline segmentation dataset: shapes of several classes on textured backgrounds.

Written in mmseg's folder layout (``img_dir/{train,val}/*.png`` images,
``ann_dir/{train,val}/*.png`` label maps of class ids, 255 on a one-pixel ignore boundary around
each shape as in Pascal VOC). Colours and textures are random per shape (each shape's colour far
from its background's), so a model must learn the shapes themselves, not their colours.

    python -m seg.synthetic --out data/shapes_seg
"""
import argparse
import os
import os.path as osp

import numpy as np
from PIL import Image, ImageDraw

from arsam.engine import check_arg
from arsam.mmlab.offline import colour_far_from, texture

CLASSES = ("background", "circle", "square", "triangle")
PALETTE = [[0, 0, 0], [220, 20, 60], [0, 142, 0], [30, 60, 230]]
IGNORE_INDEX = 255


def _polygon(rng, cls, cx, cy, r):
    """Vertices of a shape of class ``cls`` (circle, square, triangle) centred at (cx, cy)."""
    sides = {1: 48, 2: 4, 3: 3}[cls]
    start = rng.uniform(0, 2 * np.pi)
    angles = start + 2 * np.pi * np.arange(sides) / sides
    return [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles]


def sample(rng, size, max_shapes=3):
    """One image and its label map: 1..max_shapes shapes pasted on a textured background."""
    background = colour_far_from(rng)
    image = texture(rng, size, size, background)
    label = np.zeros((size, size), np.uint8)
    for _ in range(rng.integers(1, max_shapes + 1)):
        cls = int(rng.integers(1, len(CLASSES)))
        r = rng.uniform(0.12, 0.3) * size
        cx, cy = rng.uniform(r, size - r, size=2)
        mask = Image.new("L", (size, size), 0)
        ImageDraw.Draw(mask).polygon(_polygon(rng, cls, cx, cy, r), fill=1)
        mask = np.asarray(mask, bool)
        image[mask] = texture(rng, size, size, colour_far_from(rng, background))[mask]
        label[mask] = cls
    boundary = np.zeros_like(label, bool)  # one pixel where the class changes, as in VOC
    boundary[:, 1:] |= label[:, 1:] != label[:, :-1]
    boundary[1:, :] |= label[1:, :] != label[:-1, :]
    label[boundary] = IGNORE_INDEX
    return image, label


def generate(out, num_train=200, num_val=50, size=64, max_shapes=3, seed=0):
    """Write the dataset under ``out`` in mmseg's layout; deterministic given ``seed``."""
    for name, value, low in (("num_train", num_train, 1), ("num_val", num_val, 1),
                             ("size", size, 16), ("max_shapes", max_shapes, 1)):
        check_arg(name, value, isinstance(value, int) and value >= low, f"an int >= {low}")
    rng = np.random.default_rng(seed)
    for split, count in (("train", num_train), ("val", num_val)):
        for sub in ("img_dir", "ann_dir"):
            os.makedirs(osp.join(out, sub, split), exist_ok=True)
        for i in range(count):
            image, label = sample(rng, size, max_shapes)
            Image.fromarray(image).save(osp.join(out, "img_dir", split, f"{i:05d}.png"))
            Image.fromarray(label).save(osp.join(out, "ann_dir", split, f"{i:05d}.png"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/shapes_seg")
    parser.add_argument("--num-train", type=int, default=200)
    parser.add_argument("--num-val", type=int, default=50)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    generate(args.out, args.num_train, args.num_val, args.size, seed=args.seed)


if __name__ == "__main__":
    main()
