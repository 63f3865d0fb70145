"""Offline datasets that the project generates (no download): generation on first use and
the textures the generators draw with."""
import os
import os.path as osp
import shutil
import tempfile

import numpy as np


def ensure_generated(root, generate, **kwargs):
    """Run ``generate(out, **kwargs)`` into ``root`` unless ``root`` already exists.

    The data is written to a temporary sibling folder and renamed into place, so concurrent
    callers (train and val datasets, several workers) never see a half-written dataset.
    """
    if osp.exists(root):
        return
    parent = osp.dirname(osp.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".generating-", dir=parent)
    try:
        generate(tmp, **kwargs)
        os.rename(tmp, root)
    except OSError:
        if not osp.isdir(root):  # lost the race only if someone else finished
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def texture(rng, height, width, colour):
    """``colour`` modulated by two random sinusoidal gratings and pixel noise, uint8 [h, w, 3]."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pattern = np.zeros((height, width), np.float32)
    for _ in range(2):
        angle, freq, phase = rng.uniform(0, np.pi), rng.uniform(0.05, 0.4), rng.uniform(0, 6.3)
        pattern += np.sin(freq * (x * np.cos(angle) + y * np.sin(angle)) + phase)
    image = colour + 25.0 * pattern[..., None] + rng.normal(0, 8, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def colour_far_from(rng, avoid=None, distance=100.0):
    """A random RGB colour at least ``distance`` away from ``avoid`` (if given)."""
    while True:
        colour = rng.uniform(40, 215, size=3).astype(np.float32)
        if avoid is None or np.linalg.norm(colour - avoid) >= distance:
            return colour
