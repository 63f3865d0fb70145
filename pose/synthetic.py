"""An offline pose dataset: stick figures with COCO's 17 keypoints and a COCO annotation file.

Each image holds 1..max_figures front-facing figures (random limb angles, lean, size and
colours, joints marked by dots) on a textured background. Layout (as data/coco):
``{train,val}/*.png`` and ``annotations/person_keypoints_{train,val}.json`` with images,
annotations (keypoints, num_keypoints, bbox, area = the figure's pixel count, iscrowd) and the
COCO person category (keypoint names, skeleton).

    python -m pose.synthetic --out data/sticks_pose
"""
import argparse
import json
import os
import os.path as osp

import numpy as np
from PIL import Image, ImageDraw

from arsam.engine import check_arg
from arsam.mmlab.offline import colour_far_from, texture

KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
             "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
             "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")
SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
            [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]
CATEGORY = dict(id=1, name="person", supercategory="person", keypoints=list(KEYPOINTS),
                skeleton=SKELETON)
_LIMBS = [(5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16)]


def _rotate(v, angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def skeleton(rng, pelvis, scale):
    """Keypoints [17, 2] of a front-facing figure of height ~0.9·scale (the person's left on
    the image's right)."""
    lean = rng.uniform(-0.25, 0.25)
    up, lat = _rotate(np.array([0.0, -1.0]), lean), _rotate(np.array([1.0, 0.0]), lean)
    k = np.zeros((17, 2))
    neck = pelvis + 0.30 * scale * up
    k[0] = neck + 0.12 * scale * up
    for side, (eye, ear, shoulder, elbow, wrist, hip, knee, ankle) in (
            (1, (1, 3, 5, 7, 9, 11, 13, 15)), (-1, (2, 4, 6, 8, 10, 12, 14, 16))):
        k[eye] = k[0] + scale * (0.025 * up + side * 0.025 * lat)
        k[ear] = k[0] + scale * (0.005 * up + side * 0.055 * lat)
        k[shoulder] = neck + side * 0.11 * scale * lat
        arm = _rotate(-up, -side * rng.uniform(0.2, 2.6))  # raised outwards
        k[elbow] = k[shoulder] + 0.16 * scale * arm
        k[wrist] = k[elbow] + 0.14 * scale * _rotate(arm, rng.uniform(-1.5, 1.5))
        k[hip] = pelvis + side * 0.07 * scale * lat
        thigh = _rotate(-up, -side * rng.uniform(-0.1, 0.6))
        k[knee] = k[hip] + 0.22 * scale * thigh
        k[ankle] = k[knee] + 0.22 * scale * _rotate(thigh, side * rng.uniform(0.0, 0.6))
    return k


def draw_figure(draw, k, scale, body, joints):
    """Render keypoints ``k`` as a stick figure: torso, head, limbs, joint dots."""
    width = max(2, int(round(0.05 * scale)))
    draw.polygon([tuple(k[i]) for i in (5, 6, 12, 11)], fill=body)
    r = 0.07 * scale
    draw.ellipse([k[0][0] - r, k[0][1] - r, k[0][0] + r, k[0][1] + r], fill=body)
    for a, b in _LIMBS:
        draw.line([tuple(k[a]), tuple(k[b])], fill=body, width=width)
    dot = max(1.0, 0.02 * scale)
    for x, y in k:
        draw.ellipse([x - dot, y - dot, x + dot, y + dot], fill=joints)


def sample(rng, size, max_figures=2):
    """One image and the COCO annotations (without ids) of its figures."""
    background = colour_far_from(rng)
    image = Image.fromarray(texture(rng, size, size, background))
    draw = ImageDraw.Draw(image)
    count = int(rng.integers(1, max_figures + 1))
    slot = size / count  # figures side by side, one per slot
    annotations = []
    for j in range(count):
        scale = rng.uniform(0.6, 1.0) * min(size, slot / 0.85)
        pelvis = np.array([(j + 0.5) * slot, size / 2 + 0.03 * scale]) + rng.uniform(-2, 2, 2)
        k = skeleton(rng, pelvis, scale)
        body = tuple(int(c) for c in colour_far_from(rng, background))
        joints = tuple(int(c) for c in colour_far_from(rng, np.array(body, np.float32)))
        mask = Image.new("L", (size, size), 0)
        draw_figure(ImageDraw.Draw(mask), k, scale, 1, 1)
        draw_figure(draw, k, scale, body, joints)
        ys, xs = np.nonzero(np.asarray(mask))
        inside = (k[:, 0] >= 0) & (k[:, 0] < size) & (k[:, 1] >= 0) & (k[:, 1] < size)
        keypoints = np.concatenate([np.where(inside[:, None], k, 0.0),
                                    2.0 * inside[:, None]], axis=1)
        annotations.append(dict(
            keypoints=[round(float(v), 2) for v in keypoints.ravel()],
            num_keypoints=int(inside.sum()),
            bbox=[int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                  int(ys.max() - ys.min() + 1)],
            area=int(len(xs)), iscrowd=0, category_id=CATEGORY["id"]))
    return np.asarray(image), annotations


def generate(out, num_train=400, num_val=100, size=128, max_figures=2, seed=0):
    """Write the dataset under ``out``; deterministic given ``seed``."""
    for name, value, low in (("num_train", num_train, 1), ("num_val", num_val, 1),
                             ("size", size, 32), ("max_figures", max_figures, 1)):
        check_arg(name, value, isinstance(value, int) and value >= low, f"an int >= {low}")
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(out, "annotations"), exist_ok=True)
    for split, count in (("train", num_train), ("val", num_val)):
        os.makedirs(osp.join(out, split), exist_ok=True)
        coco = dict(info=dict(description=f"arsam stick figures ({split})"), licenses=[],
                    images=[], annotations=[], categories=[CATEGORY])
        for i in range(count):
            image, annotations = sample(rng, size, max_figures)
            name = f"{i:05d}.png"
            Image.fromarray(image).save(osp.join(out, split, name))
            coco["images"].append(dict(id=i + 1, file_name=name, width=size, height=size))
            for ann in annotations:
                coco["annotations"].append(
                    dict(ann, id=len(coco["annotations"]) + 1, image_id=i + 1))
        with open(osp.join(out, "annotations", f"person_keypoints_{split}.json"), "w") as f:
            json.dump(coco, f)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/sticks_pose")
    parser.add_argument("--num-train", type=int, default=400)
    parser.add_argument("--num-val", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    generate(args.out, args.num_train, args.num_val, args.size, seed=args.seed)


if __name__ == "__main__":
    main()
