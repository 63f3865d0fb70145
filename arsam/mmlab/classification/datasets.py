"""Classification datasets in arsam's DATASETS registry (``arsam.CIFAR10``, ...).

Each item is ``dict(inputs=Tensor[C, H, W], data_samples=int label)``: images stay in pixel units
(uint8 for CIFAR/ImageNet, floats in [0, 1] for digits) and the model's data preprocessor normalizes
them. Use ``collate_fn=dict(type='default_collate')`` so a batch's data samples are a label tensor.
Nothing is downloaded unless ``download=True`` (CIFAR).
"""
import os

import torch
from torch.utils.data import Dataset

from ...digits import load_digits_split
from ...engine import check_arg
from ...registry import DATASETS


class Cutout:
    """Cutout (DeVries & Taylor, 2017): a ``size`` x ``size`` square, centred at a uniformly drawn
    pixel and clipped at the borders, set to ``fill`` (per channel) on a ``[C, H, W]`` tensor."""

    def __init__(self, size=16, fill=0):
        self.size, self.fill = size, fill

    def __call__(self, img):
        h, w = img.shape[-2:]
        cy, cx = torch.randint(h, ()).item(), torch.randint(w, ()).item()
        y0, x0 = max(cy - self.size // 2, 0), max(cx - self.size // 2, 0)
        img = img.clone()
        img[:, y0:cy + self.size - self.size // 2, x0:cx + self.size - self.size // 2] = \
            torch.as_tensor(self.fill, dtype=img.dtype).view(-1, 1, 1)
        return img


def _check_split(split, splits):
    check_arg("split", split, split in splits, " or ".join(map(repr, splits)))


class _ImageDataset(Dataset):
    """A torchvision dataset of (PIL image, label) seen through ``transform``."""

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        image, label = self.data[index]
        return dict(inputs=self.transform(image), data_samples=int(label))


class _CIFAR(_ImageDataset):
    """CIFAR through torchvision. Train augmentation as in SAM/ESAM/vSAM: random crop 32 with 4
    pixels of zero padding, horizontal flip, Cutout 16x16 filled with the mean pixel (zero after
    normalization). ``augment`` defaults to ``split == 'train'``."""
    name = folder = MEAN = None

    def __init__(self, data_root, split="train", augment=None, cutout=16, download=False):
        import torchvision
        from torchvision import transforms as T
        _check_split(split, ("train", "test"))
        try:
            self.data = getattr(torchvision.datasets, self.name.replace("-", ""))(
                data_root, train=split == "train", download=download)
        except RuntimeError as error:
            path = os.path.abspath(os.path.join(data_root, self.folder))
            raise FileNotFoundError(
                f"{self.name} not found at {path}: "
                f"extract the python version from https://www.cs.toronto.edu/~kriz/cifar.html "
                f"into {data_root!r}, or set download=True on the dataset (e.g. --cfg-options "
                f"train_dataloader.dataset.download=True val_dataloader.dataset.download=True)"
            ) from error
        steps = [T.PILToTensor()]
        if split == "train" if augment is None else augment:
            steps = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), *steps]
            if cutout:
                steps.append(Cutout(cutout, [round(m) for m in self.MEAN]))
        self.transform = T.Compose(steps)
        self.metainfo = dict(classes=tuple(self.data.classes))


@DATASETS.register_module()
class CIFAR10(_CIFAR):
    name, folder = "CIFAR-10", "cifar-10-batches-py"
    MEAN = (125.307, 122.961, 113.8575)

    def __init__(self, data_root="data/cifar10", **kwargs):
        super().__init__(data_root, **kwargs)


@DATASETS.register_module()
class CIFAR100(_CIFAR):
    name, folder = "CIFAR-100", "cifar-100-python"
    MEAN = (129.304, 124.070, 112.434)

    def __init__(self, data_root="data/cifar100", **kwargs):
        super().__init__(data_root, **kwargs)


@DATASETS.register_module()
class ImageNetFolder(_ImageDataset):
    """ImageNet as an image folder ``data_root/<split>/<class>/<image>`` (torchvision
    ImageFolder). Train: RandomResizedCrop 224 and flip; otherwise resize 256, center crop 224."""

    def __init__(self, data_root="data/imagenet", split="train", augment=None):
        from torchvision import transforms as T
        from torchvision.datasets import ImageFolder
        _check_split(split, ("train", "val"))
        root = os.path.join(data_root, split)
        if not os.path.isdir(root):
            raise FileNotFoundError(
                f"ImageNet {split} split not found at {os.path.abspath(root)}: download ILSVRC2012 "
                f"from https://image-net.org and arrange it as {root}/<class>/<image>.JPEG "
                f"(one folder per class, e.g. with torchvision.datasets.ImageNet's layout)")
        self.data = ImageFolder(root)
        train = split == "train" if augment is None else augment
        self.transform = T.Compose(
            [T.RandomResizedCrop(224), T.RandomHorizontalFlip()] if train else
            [T.Resize(256), T.CenterCrop(224)])
        self.transform.transforms.append(T.PILToTensor())
        self.metainfo = dict(classes=tuple(self.data.classes))


@DATASETS.register_module()
class Digits(Dataset):
    """scikit-learn's digits, offline, split by :func:`arsam.digits.load_digits_split`: 1437 train
    / 360 test 8x8 images in [0, 1]; ``label_noise`` gives that fraction of the train labels
    another class (symmetric label noise)."""

    def __init__(self, split="train", test_size=360, seed=0, label_noise=0.0):
        _check_split(split, ("train", "test"))
        check_arg("label_noise", label_noise, isinstance(label_noise, (int, float)) and (
            0 <= label_noise < 1 and (split == "train" or not label_noise)),
            "in [0, 1), and 0 for the test split (noise applies to training labels only)")
        x_train, y_train, x_test, y_test = load_digits_split(test_size, seed, label_noise)
        self.images, self.labels = (x_train, y_train) if split == "train" else (x_test, y_test)
        self.metainfo = dict(classes=tuple(str(c) for c in range(10)))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return dict(inputs=self.images[index], data_samples=int(self.labels[index]))
