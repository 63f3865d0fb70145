"""The offline shapes dataset: generator, mmseg dataset class, checks before training."""
import os
import re

import numpy as np
import pytest
from PIL import Image

import seg
from arsam.mmlab.offline import ensure_generated
from seg import synthetic
from mmengine.registry import DefaultScope
from mmseg.utils import register_all_modules

register_all_modules(init_default_scope=False)


def read(path):
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("seg") / "shapes")
    synthetic.generate(root, num_train=4, num_val=2, size=32, seed=3)
    return root


def test_layout_is_mmseg_and_generation_is_deterministic(shapes, tmp_path):
    names = {s: sorted(os.listdir(os.path.join(shapes, "img_dir", s))) for s in ("train", "val")}
    assert names == {"train": [f"{i:05d}.png" for i in range(4)],
                     "val": ["00000.png", "00001.png"]}
    for split, files in names.items():
        assert sorted(os.listdir(os.path.join(shapes, "ann_dir", split))) == files
    again = str(tmp_path / "again")
    synthetic.generate(again, num_train=4, num_val=2, size=32, seed=3)
    for sub in ("img_dir/train/00003.png", "ann_dir/val/00001.png"):
        np.testing.assert_array_equal(read(os.path.join(shapes, sub)),
                                      read(os.path.join(again, sub)))
    image = read(os.path.join(shapes, "img_dir/train/00000.png"))
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8


def test_labels_are_class_ids_with_an_ignore_boundary(shapes):
    for i in range(4):
        label = read(os.path.join(shapes, f"ann_dir/train/{i:05d}.png"))
        assert label.shape == (32, 32)
        assert set(np.unique(label).tolist()) <= {0, 1, 2, 3, synthetic.IGNORE_INDEX}
        assert (label > 0).any() and (label == synthetic.IGNORE_INDEX).any()
        # no two neighbouring pixels carry different classes: a boundary of 255 separates them
        for a, b in ((label[:, 1:], label[:, :-1]), (label[1:, :], label[:-1, :])):
            valid = (a != synthetic.IGNORE_INDEX) & (b != synthetic.IGNORE_INDEX)
            assert (a[valid] == b[valid]).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_train=0), "num_train must be an int >= 1, got 0"),
    (dict(size=8), "size must be an int >= 16, got 8"),
    (dict(max_shapes=1.5), "max_shapes must be an int >= 1, got 1.5"),
])
def test_generate_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        synthetic.generate(str(tmp_path / "x"), **kwargs)
    assert not (tmp_path / "x").exists()


def dataset(root, split="train", **kwargs):
    with DefaultScope.overwrite_default_scope("mmseg"):  # the pipeline's transforms
        return seg.ShapesSegDataset(
            data_root=root, data_prefix=dict(img_path=f"img_dir/{split}",
                                             seg_map_path=f"ann_dir/{split}"),
            pipeline=[dict(type="LoadImageFromFile"), dict(type="LoadAnnotations"),
                      dict(type="PackSegInputs")], **kwargs)


def test_dataset_generates_on_first_use_and_loads_through_mmseg(tmp_path):
    root = str(tmp_path / "data" / "shapes")
    train = dataset(root, generate=dict(num_train=3, num_val=2, size=32))
    assert len(train) == 3 and len(dataset(root, "val")) == 2
    assert train.metainfo["classes"] == synthetic.CLASSES
    assert os.listdir(tmp_path / "data") == ["shapes"]  # no temporary folder left behind
    item = train[1]
    np.testing.assert_array_equal(
        item["data_samples"].gt_sem_seg.data[0].numpy(),
        read(os.path.join(root, "ann_dir/train/00001.png")))
    assert tuple(item["inputs"].shape) == (3, 32, 32)


def test_missing_dataset_path_fails_with_a_clear_error(tmp_path):
    root = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"dataset folder '{root}/img_dir/train' (data_prefix.img_path) not found; generate "
            f"the data with `python -m seg.synthetic --out {root}`")):
        dataset(root)


def test_labels_outside_the_class_range_fail_with_a_clear_error(shapes, tmp_path):
    root = str(tmp_path / "bad")
    synthetic.generate(root, num_train=3, num_val=1, size=32)
    path = os.path.join(root, "ann_dir/train/00001.png")
    label = read(path).copy()
    label[0, :2] = [7, 4]
    Image.fromarray(label).save(path)
    with pytest.raises(ValueError, match=re.escape(
            f"label map {path} has class ids [4, 7] outside the class range [0, 3] "
            "(ignore_index 255)")):
        dataset(root)


def test_check_label_range_accepts_one_more_id_with_reduce_zero_label(tmp_path):
    path = str(tmp_path / "label.png")
    Image.fromarray(np.array([[0, 3], [255, 1]], np.uint8)).save(path)
    infos = [dict(seg_map_path=path)]
    seg.check_label_range(infos, num_classes=4, ignore_index=255)
    seg.check_label_range(infos, num_classes=3, ignore_index=255, reduce_zero_label=True)
    with pytest.raises(ValueError, match=re.escape(
            f"label map {path} has class ids [3] outside the class range [0, 2] "
            "(ignore_index 255)")):
        seg.check_label_range(infos, num_classes=3, ignore_index=255)


def test_failed_generation_leaves_nothing(tmp_path):
    def broken(out):
        open(os.path.join(out, "partial"), "w").close()
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        ensure_generated(str(tmp_path / "data"), broken)
    assert os.listdir(tmp_path) == []
