"""The offline shapes dataset for mmseg, with the checks that must fail before training."""
import os.path as osp

import numpy as np
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS
from PIL import Image

from arsam.mmlab.offline import ensure_generated

from . import synthetic


def check_label_range(data_list, num_classes, ignore_index, reduce_zero_label=False):
    """Raise ValueError naming the first label map with ids outside the class range.

    Accepted stored ids: 0..num_classes-1 (0..num_classes with ``reduce_zero_label``, where
    id 0 becomes ignored) and ``ignore_index``.
    """
    high = num_classes + int(reduce_zero_label)
    for info in data_list:
        ids = np.unique(np.asarray(Image.open(info["seg_map_path"])))
        bad = ids[(ids >= high) & (ids != ignore_index)]
        if bad.size:
            raise ValueError(
                f"label map {info['seg_map_path']} has class ids {bad.tolist()} outside the "
                f"class range [0, {high - 1}] (ignore_index {ignore_index})")


@DATASETS.register_module()
class ShapesSegDataset(BaseSegDataset):
    """Shapes on textured backgrounds (:mod:`seg.synthetic`), in mmseg's folder layout.

    Args:
        generate: None, or keyword arguments of :func:`seg.synthetic.generate` to generate the
            data under ``data_root`` on first use when ``data_root`` does not exist.
        **kwargs: :class:`mmseg.datasets.BaseSegDataset`'s.

    Missing folders and label ids outside the class range raise before any training.
    """

    METAINFO = dict(classes=synthetic.CLASSES, palette=synthetic.PALETTE)

    def __init__(self, generate=None, img_suffix=".png", seg_map_suffix=".png", **kwargs):
        if generate is not None:
            ensure_generated(kwargs.get("data_root", ""), synthetic.generate, **generate)
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)

    def load_data_list(self):
        for key in ("img_path", "seg_map_path"):
            folder = self.data_prefix.get(key)
            if not folder or not osp.isdir(folder):
                raise FileNotFoundError(
                    f"dataset folder {folder!r} (data_prefix.{key}) not found; generate the data "
                    f"with `python -m seg.synthetic --out {self.data_root}` or pass "
                    "generate=dict() to the dataset")
        data_list = super().load_data_list()
        if not data_list:
            raise FileNotFoundError(
                f"no '*{self.img_suffix}' images in {self.data_prefix['img_path']!r}")
        check_label_range(data_list, len(self.metainfo["classes"]), self.ignore_index,
                          self.reduce_zero_label)
        return data_list
