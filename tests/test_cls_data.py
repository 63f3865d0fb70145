"""Digits split and label noise, Cutout, dataset path errors, ImageNet folder, Accuracy."""
import os

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from arsam.mmlab.classification import (CIFAR10, CIFAR100, Accuracy, Digits, ImageNetFolder,
                                        load_digits_split, symmetric_label_noise)
from arsam.mmlab.classification.datasets import Cutout


def test_digits_split_is_a_fixed_partition():
    images, labels = load_digits(return_X_y=True)
    train_x, train_y = load_digits_split("train")
    test_x, test_y = load_digits_split("test")
    assert train_x.shape == (1437, 1, 8, 8) and test_x.shape == (360, 1, 8, 8)
    assert train_x.dtype == np.float32 and train_y.dtype == np.int64
    # together the splits are the 1797 images, each exactly once, with their labels
    order = np.random.default_rng(0).permutation(1797)
    np.testing.assert_array_equal(np.concatenate([train_x, test_x]).reshape(1797, 64),
                                  images[order])
    np.testing.assert_array_equal(np.concatenate([train_y, test_y]), labels[order])
    np.testing.assert_array_equal(load_digits_split("train")[1], train_y)  # deterministic
    assert not np.array_equal(load_digits_split("train", seed=1)[1], train_y)
    assert load_digits_split("test", test_size=100)[0].shape == (100, 1, 8, 8)
    with pytest.raises(ValueError, match=r"split must be 'train' or 'test', got 'val'"):
        load_digits_split("val")
    with pytest.raises(ValueError, match=r"test_size must be an int in \[1, 1796\], got 1797"):
        load_digits_split("test", test_size=1797)


def test_symmetric_label_noise_flips_exactly_the_fraction():
    labels = np.arange(1000) % 10
    noisy = symmetric_label_noise(labels, 0.25, seed=3)
    assert (noisy != labels).sum() == 250          # every chosen label changes class
    assert noisy.min() >= 0 and noisy.max() <= 9
    np.testing.assert_array_equal(noisy, symmetric_label_noise(labels, 0.25, seed=3))
    assert not np.array_equal(noisy, symmetric_label_noise(labels, 0.25, seed=4))
    np.testing.assert_array_equal(labels, np.arange(1000) % 10)  # input untouched
    # the wrong labels spread over the 9 other classes
    assert len(np.unique((noisy - labels)[noisy != labels] % 10)) == 9
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\], got 1.5"):
        symmetric_label_noise(labels, 1.5)


def test_digits_dataset_items_and_noise():
    train = Digits(label_noise=0.2, noise_seed=1)
    clean_x, clean_y = load_digits_split("train")
    assert len(train) == 1437 and len(Digits("test")) == 360
    assert (train.labels.numpy() != clean_y).sum() == round(0.2 * 1437)
    item = train[5]
    torch.testing.assert_close(item["inputs"], torch.from_numpy(clean_x[5]), rtol=0, atol=0)
    assert item["data_samples"] == int(train.labels[5])
    with pytest.raises(ValueError, match="label_noise must be 0 for the test split"):
        Digits("test", label_noise=0.1)


def test_cutout_square_clipped_at_borders():
    torch.manual_seed(0)
    img = torch.full((3, 32, 32), 7, dtype=torch.uint8)
    sizes = set()
    for _ in range(50):
        out = Cutout(16, fill=[1, 2, 3])(img)
        mask = out[0] == 1
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        h, w = len(rows), len(cols)
        assert mask.sum() == h * w and 8 <= h <= 16 and 8 <= w <= 16  # one clipped square
        assert torch.equal(out[1][mask], torch.full((h * w,), 2, dtype=torch.uint8))
        assert (out[:, ~mask] == 7).all()
        sizes.add((h, w))
    assert (16, 16) in sizes and len(sizes) > 1
    assert (img == 7).all()


@pytest.mark.parametrize("cls, folder", [(CIFAR10, "cifar-10-batches-py"),
                                         (CIFAR100, "cifar-100-python")])
def test_missing_cifar_names_path_and_remedy(cls, folder, tmp_path):
    path = os.path.join(str(tmp_path), folder)
    with pytest.raises(FileNotFoundError, match=(
            rf"^{cls.name} not found at {path}: extract the python version from "
            r"https://www.cs.toronto.edu/~kriz/cifar.html .*set download=True")):
        cls(data_root=str(tmp_path))
    assert os.listdir(tmp_path) == []  # nothing was downloaded


def test_imagenet_folder(tmp_path):
    from PIL import Image
    with pytest.raises(FileNotFoundError, match=(
            rf"ImageNet val split not found at {tmp_path}/val: download ILSVRC2012 from "
            r"https://image-net.org")):
        ImageNetFolder(str(tmp_path), split="val")
    for name, color in [("a", 10), ("b", 200)]:
        os.makedirs(tmp_path / "val" / name)
        Image.new("RGB", (300, 260), (color, 0, 0)).save(tmp_path / "val" / name / "0.png")
    data = ImageNetFolder(str(tmp_path), split="val")
    item = data[1]
    assert data.metainfo == dict(classes=("a", "b")) and item["data_samples"] == 1
    assert item["inputs"].shape == (3, 224, 224) and item["inputs"].dtype == torch.uint8
    assert (item["inputs"][0] == 200).all()
    assert ImageNetFolder(str(tmp_path), split="val", augment=True)[0]["inputs"].shape == (
        3, 224, 224)


def test_accuracy_metric_by_hand():
    scores = torch.tensor([[0.1, 0.5, 0.2, 0.1, 0.05, 0.05],   # label 1: top-1
                           [0.3, 0.1, 0.2, 0.25, 0.1, 0.05],   # label 3: rank 2
                           [0.05, 0.1, 0.2, 0.15, 0.25, 0.25],  # label 0: rank 6, missed by top-5
                           [0.4, 0.1, 0.1, 0.1, 0.2, 0.1]])    # label 4: rank 2
    labels = [1, 3, 0, 4]
    metric = Accuracy(topk=(1, 5))
    metric.dataset_meta = {}
    metric.process({}, [dict(pred_score=s, gt_label=torch.tensor(y))
                        for s, y in zip(scores, labels)])
    assert metric.evaluate(4) == {"accuracy/top1": 25.0, "accuracy/top5": 75.0}
    # top-5 is dropped when there are no more than 5 classes
    small = Accuracy(topk=(1, 5))
    small.process({}, [dict(pred_score=torch.tensor([0.2, 0.3, 0.5]), gt_label=1)])
    assert small.evaluate(1) == {"accuracy/top1": 0.0}
    with pytest.raises(ValueError, match=r"topk must be a non-empty sequence of ints >= 1"):
        Accuracy(topk=())
