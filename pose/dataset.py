"""The offline stick-figure dataset for mmpose: COCO-format data read by mmpose's CocoDataset."""
import os.path as osp

from mmpose.datasets import CocoDataset
from mmpose.registry import DATASETS

from arsam.mmlab.offline import ensure_generated

from . import synthetic


@DATASETS.register_module()
class StickFigureDataset(CocoDataset):
    """Stick figures with COCO's 17 keypoints (:mod:`pose.synthetic`); mmpose's CocoDataset with
    COCO's metainfo, which also checks that each annotation has the metainfo's keypoint count.

    Args:
        generate: None, or keyword arguments of :func:`pose.synthetic.generate` to generate the
            data under ``data_root`` on first use when ``data_root`` does not exist.
        **kwargs: :class:`mmpose.datasets.CocoDataset`'s.

    A missing annotation file or image folder raises before any training.
    """

    def __init__(self, ann_file="", generate=None, data_root="", data_prefix=dict(img=""),
                 **kwargs):
        if generate is not None:
            ensure_generated(data_root, synthetic.generate, **generate)
        hint = (f"generate the data with `python -m pose.synthetic --out {data_root}` or pass "
                "generate=dict() to the dataset")
        for name, path, exists in (("ann_file", ann_file, osp.isfile),
                                   ("data_prefix.img", data_prefix.get("img", ""), osp.isdir)):
            path = osp.join(data_root, path)
            if not exists(path):
                raise FileNotFoundError(f"{name} {path!r} not found; {hint}")
        super().__init__(ann_file=ann_file, data_root=data_root, data_prefix=data_prefix,
                         **kwargs)

    def parse_data_info(self, raw_data_info):
        ann = raw_data_info["raw_ann_info"]
        expected = 3 * self.metainfo["num_keypoints"]
        if "keypoints" in ann and len(ann["keypoints"]) != expected:
            raise ValueError(
                f"annotation {ann.get('id')} in {self.ann_file} has {len(ann['keypoints'])} "
                f"keypoint values, expected {expected} (x, y, v for each of "
                f"{self.metainfo['num_keypoints']} keypoints)")
        return super().parse_data_info(raw_data_info)
