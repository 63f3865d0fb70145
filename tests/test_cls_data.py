"""Digits dataset split and label noise, Cutout, dataset path errors, ImageNet folder, Accuracy."""
import os

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from arsam.mmlab.classification import CIFAR10, CIFAR100, Accuracy, Digits, ImageNetFolder
from arsam.mmlab.classification.datasets import Cutout


def test_digits_split_is_a_fixed_partition():
    images, labels = load_digits(return_X_y=True)
    train, test = Digits("train"), Digits("test")
    assert train.images.shape == (1437, 1, 8, 8) and test.images.shape == (360, 1, 8, 8)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    # together the splits hold each of the 1797 (image, label) pairs once, scaled to [0, 1]
    ours = torch.cat([torch.cat([d.images.reshape(-1, 64) * 16, d.labels[:, None]], 1)
                      for d in (train, test)]).numpy()
    theirs = np.concatenate([images, labels[:, None]], 1)
    np.testing.assert_array_equal(ours[np.lexsort(ours.T)], theirs[np.lexsort(theirs.T)])
    torch.testing.assert_close(Digits("train").images, train.images, rtol=0, atol=0)
    assert not torch.equal(Digits("train", seed=1).labels, train.labels)
    assert len(Digits("test", test_size=100)) == 100
    item = train[5]
    assert torch.equal(item["inputs"], train.images[5])
    assert item["data_samples"] == int(train.labels[5])
    with pytest.raises(ValueError, match=r"split must be 'train' or 'test', got 'val'"):
        Digits("val")


def test_digits_label_noise_flips_exactly_the_fraction():
    clean, noisy = Digits(), Digits(label_noise=0.2)
    changed = clean.labels != noisy.labels
    assert changed.sum() == round(0.2 * 1437)     # every chosen label changes class
    assert torch.equal(clean.images, noisy.images)
    assert noisy.labels.min() >= 0 and noisy.labels.max() <= 9
    assert len(((noisy.labels - clean.labels)[changed] % 10).unique()) == 9  # spread over classes
    assert torch.equal(Digits(label_noise=0.2).labels, noisy.labels)   # deterministic
    assert not torch.equal(Digits(label_noise=0.2, seed=1).labels, Digits(seed=1).labels)
    assert torch.equal(Digits("test").labels, Digits("test", seed=0).labels)
    with pytest.raises(ValueError, match=r"label_noise must be in \[0, 1\), and 0 for the test "
                       r"split \(noise applies to training labels only\), got 0.1"):
        Digits("test", label_noise=0.1)
    with pytest.raises(ValueError, match=r"label_noise must be in \[0, 1\).*got 1.0"):
        Digits(label_noise=1.0)


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


class FakeCIFAR:
    """Stands in for torchvision's CIFAR10: two flat-colored 32x32 images."""
    classes = ["a", "b"]

    def __init__(self, root, train, download):
        from PIL import Image
        self.items = [(Image.new("RGB", (32, 32), (200, 100, 50)), 1)] * 2

    def __getitem__(self, index):
        return self.items[index]

    def __len__(self):
        return 2


def test_cifar_items_and_train_augmentation(monkeypatch):
    import torchvision
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR)
    image = torch.tensor([200, 100, 50], dtype=torch.uint8).view(3, 1, 1).expand(3, 32, 32)
    test = CIFAR10(split="test")
    assert test.metainfo == dict(classes=("a", "b")) and len(test) == 2
    assert test[0]["data_samples"] == 1 and torch.equal(test[0]["inputs"], image)
    torch.manual_seed(0)
    for _ in range(10):
        x = CIFAR10(split="train")[0]["inputs"]
        assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
        cut = (x == torch.tensor([125, 123, 114], dtype=torch.uint8).view(3, 1, 1)).all(0)
        pad = (x == 0).all(0)                      # zero padding shifted in by the crop
        assert 64 <= cut.sum() <= 256              # Cutout 16x16, clipped to at least 8x8
        assert ((x == image).all(0) | cut | pad).all()
    assert torch.equal(CIFAR10(split="train", augment=False)[0]["inputs"], image)
