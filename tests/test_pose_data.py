"""The offline stick-figure dataset: generator, COCO annotation file, mmpose dataset and metric."""
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

import pose
from pose import synthetic
from mmengine.registry import DefaultScope
from mmpose.evaluation import CocoMetric
from mmpose.utils import register_all_modules
from xtcocotools.coco import COCO

register_all_modules(init_default_scope=False)


@pytest.fixture(scope="module")
def sticks(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("pose") / "sticks")
    synthetic.generate(root, num_train=6, num_val=4, size=64, seed=2)
    return root


def ann_path(root, split):
    return os.path.join(root, "annotations", f"person_keypoints_{split}.json")


def dataset(root, split="train", **kwargs):
    with DefaultScope.overwrite_default_scope("mmpose"):  # the pipeline's transforms
        return pose.StickFigureDataset(
            data_root=root, ann_file=f"annotations/person_keypoints_{split}.json",
            data_prefix=dict(img=f"{split}/"), test_mode=split == "val",
            pipeline=[dict(type="LoadImage"), dict(type="GetBBoxCenterScale"),
                      dict(type="TopdownAffine", input_size=(32, 64)),
                      dict(type="PackPoseInputs")], **kwargs)


def test_annotation_file_is_coco_keypoints(sticks):
    coco = COCO(ann_path(sticks, "train"))
    assert [c["keypoints"] for c in coco.loadCats(coco.getCatIds())] == [list(synthetic.KEYPOINTS)]
    assert sorted(coco.getImgIds()) == list(range(1, 7))
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) >= 6 and len({a["id"] for a in anns}) == len(anns)
    for ann in anns:
        k = np.array(ann["keypoints"]).reshape(17, 3)
        assert ann["num_keypoints"] == int((k[:, 2] > 0).sum()) and ann["iscrowd"] == 0
        x, y, w, h = ann["bbox"]
        visible = k[k[:, 2] > 0, :2]
        assert (visible >= [x - 1, y - 1]).all() and (visible <= [x + w, y + h]).all()
        assert 0 < ann["area"] <= w * h
        # front-facing: the person's left shoulder/hip on the image's right
        names = synthetic.KEYPOINTS
        for part in ("shoulder", "hip"):
            assert k[names.index(f"left_{part}"), 0] > k[names.index(f"right_{part}"), 0]
    image = np.asarray(Image.open(os.path.join(sticks, "train", "00000.png")))
    assert image.shape == (64, 64, 3)


def test_generation_is_deterministic(sticks, tmp_path):
    synthetic.generate(str(tmp_path / "again"), num_train=6, num_val=4, size=64, seed=2)
    for split in ("train", "val"):
        with open(ann_path(sticks, split)) as a:
            with open(ann_path(str(tmp_path / "again"), split)) as b:
                assert json.load(a) == json.load(b)


def test_generate_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=re.escape("size must be an int >= 32, got 16")):
        synthetic.generate(str(tmp_path / "x"), size=16)


def test_dataset_is_cocodataset_with_coco_metainfo(sticks):
    train = dataset(sticks)
    with open(ann_path(sticks, "train")) as f:
        anns = json.load(f)["annotations"]
    assert len(train) == len(anns)  # top-down: one sample per figure
    assert train.metainfo["dataset_name"] == "coco" and train.metainfo["num_keypoints"] == 17
    assert [train.metainfo["keypoint_id2name"][i] for i in range(17)] == list(synthetic.KEYPOINTS)
    info = train.get_data_info(0)
    np.testing.assert_allclose(info["keypoints"][0],
                               np.array(anns[0]["keypoints"]).reshape(17, 3)[:, :2], rtol=1e-6)
    assert tuple(train[0]["inputs"].shape) == (3, 64, 32)


def test_ground_truth_scores_ap_one_with_cocometric(sticks):
    val = dataset(sticks, "val")
    metric = CocoMetric(ann_file=ann_path(sticks, "val"))
    metric.dataset_meta = val.metainfo
    samples = [dict(id=info["id"], img_id=info["img_id"], gt_instances={},
                    pred_instances=dict(keypoints=info["keypoints"],
                                        keypoint_scores=np.ones((1, 17))))
               for info in (val.get_data_info(i) for i in range(len(val)))]
    metric.process([], samples)
    result = metric.evaluate(len(samples))
    assert result["coco/AP"] == pytest.approx(1.0) and result["coco/AR"] == pytest.approx(1.0)


def test_dataset_generates_on_first_use(tmp_path):
    root = str(tmp_path / "data" / "sticks")
    assert len(dataset(root, generate=dict(num_train=2, num_val=1, size=32, max_figures=1))) == 2
    assert os.listdir(tmp_path / "data") == ["sticks"]


def test_missing_dataset_path_fails_with_a_clear_error(tmp_path):
    root = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"ann_file '{root}/annotations/person_keypoints_train.json' not found; generate the "
            f"data with `python -m pose.synthetic --out {root}`")):
        dataset(root)


def test_wrong_keypoint_count_fails_with_a_clear_error(tmp_path):
    root = str(tmp_path / "bad")
    synthetic.generate(root, num_train=2, num_val=1, size=32, max_figures=1)
    with open(ann_path(root, "train")) as f:
        coco = json.load(f)
    coco["annotations"][1]["keypoints"] = coco["annotations"][1]["keypoints"][:-3]
    with open(ann_path(root, "train"), "w") as f:
        json.dump(coco, f)
    with pytest.raises(ValueError, match=re.escape(
            f"annotation 2 in {ann_path(root, 'train')} has 48 keypoint values, expected 51")):
        dataset(root)
