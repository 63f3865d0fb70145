"""Fashion-MNIST (Xiao et al., 2017): the real-image dataset of arsam's benchmarks and demo.

Read through torchvision's ``FashionMNIST`` class, never downloaded at load time: the files are
put in place once by ``make data`` (``python -m arsam.fashion_mnist``), from Debian's package
``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist) where it is installed, else by
torchvision's download on a machine with network. The layout is torchvision's:
``<root>/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``, which mmpretrain's
``FashionMNIST`` reads too (``data_prefix='<root>/FashionMNIST/raw'``, configs/fashion_mnist/).
The default root is ``$ARSAM_DATA``, else ``data/`` of the checkout arsam is imported from
(where ``make data`` writes), else ``./data``.
"""
import argparse
import gzip
import os
import shutil
import sys

import torch

from .digits import symmetric_noise

_CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: where Debian's package ``dataset-fashion-mnist`` installs the original gzipped IDX files
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")
#: the training set's per-pixel mean and standard deviation (of x / 255)
MEAN, STD = 0.2860, 0.3530
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot")


def default_root():
    """Where ``make data`` puts the files and loaders look when given no root: ``$ARSAM_DATA``,
    else ``data`` in the checkout arsam is imported from (a source tree: pyproject.toml beside
    the package), else ``data`` in the working directory."""
    if os.environ.get("ARSAM_DATA"):
        return os.environ["ARSAM_DATA"]
    if os.path.isfile(os.path.join(_CHECKOUT, "pyproject.toml")):
        return os.path.join(_CHECKOUT, "data")
    return "data"


def raw_folder(root=None):
    return os.path.join(default_root() if root is None else root, "FashionMNIST", "raw")


def available(root=None):
    """Whether the four IDX files are under ``root`` in torchvision's layout."""
    return all(os.path.isfile(os.path.join(raw_folder(root), f)) for f in FILES)


def prepare(root=None, source=DEBIAN_DIR, download=True):
    """Put the files under ``root``: already there; else unpacked from ``source`` (the Debian
    package's folder); else, with ``download``, torchvision's ``FashionMNIST(download=True)``.
    Returns the raw folder; FileNotFoundError naming both ways when neither works. Each file is
    unpacked to a temporary name and renamed, so an interrupted run leaves no truncated file."""
    root = default_root() if root is None else root
    if available(root):
        return raw_folder(root)
    if all(os.path.isfile(os.path.join(source, f + ".gz")) for f in FILES):
        os.makedirs(raw_folder(root), exist_ok=True)
        for f in FILES:
            target = os.path.join(raw_folder(root), f)
            with gzip.open(os.path.join(source, f + ".gz"), "rb") as src, \
                    open(target + ".part", "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(target + ".part", target)
        return raw_folder(root)
    if download:
        from torchvision.datasets import FashionMNIST
        try:
            FashionMNIST(root, train=True, download=True)
            FashionMNIST(root, train=False, download=True)
        except Exception as err:  # no network: say what would work
            raise FileNotFoundError(_missing(root, source) + f" (download failed: {err})") from err
        return raw_folder(root)
    raise FileNotFoundError(_missing(root, source))


def _missing(root, source):
    return (f"Fashion-MNIST is not under {raw_folder(root)!r} and not in {source!r}: run "
            "`make data` (as root it installs Debian's package dataset-fashion-mnist; elsewhere "
            "torchvision downloads it, which needs network)")


def load(root=None, train=True):
    """One split as ``(x, y)``: uint8 images [n, 28, 28] and int64 labels, via torchvision."""
    root = default_root() if root is None else root
    if not available(root):
        raise FileNotFoundError(_missing(root, DEBIAN_DIR))
    from torchvision.datasets import FashionMNIST
    ds = FashionMNIST(root, train=train, download=False)
    return ds.data, ds.targets.long()


def load_fashion_mnist_split(root=None, train_size=None, test_size=None, noise=0.0,
                             seed=0):
    """Return ``(x_train, y_train, x_test, y_test)``: [n, 1, 28, 28] float32 images normalized by
    the training set's mean and std (``MEAN``, ``STD``), int64 labels.

    ``root``: None for :func:`default_root`. ``train_size``/``test_size`` take the first n
    images of a fixed permutation drawn with ``seed`` (None: the whole split, 60000/10000, in a
    seeded order). ``noise`` replaces that fraction of the (kept) training labels by a different
    class chosen uniformly (:func:`arsam.digits.symmetric_noise`, from the same generator; the
    same images whatever the noise); test labels stay clean.
    """
    if not (isinstance(noise, (int, float)) and not isinstance(noise, bool)
            and 0.0 <= noise < 1.0):
        raise ValueError(f"noise must be in [0, 1), got {noise!r}")
    for name, size, total in (("train_size", train_size, 60000), ("test_size", test_size, 10000)):
        if size is not None and not (isinstance(size, int) and not isinstance(size, bool)
                                     and 1 <= size <= total):
            raise ValueError(f"{name} must be None or an int in [1, {total}], got {size!r}")
    g = torch.Generator().manual_seed(seed)
    out = []
    for train, size in ((True, train_size), (False, test_size)):
        x, y = load(root, train)
        keep = torch.randperm(len(y), generator=g)[:size]
        out += [((x[keep].float() / 255 - MEAN) / STD).unsqueeze(1), y[keep]]
    x_train, y_train, x_test, y_test = out
    return x_train, symmetric_noise(y_train, noise, 10, g), x_test, y_test


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m arsam.fashion_mnist",
                                     description="Put Fashion-MNIST under --root (make data).")
    parser.add_argument("--root", default=None,
                        help="default: $ARSAM_DATA, else data/ of this checkout")
    parser.add_argument("--source", default=DEBIAN_DIR,
                        help="folder of the gzipped IDX files (Debian's dataset-fashion-mnist)")
    parser.add_argument("--no-download", action="store_true",
                        help="never fall back to torchvision's download")
    args = parser.parse_args(argv)
    try:
        print(prepare(args.root, args.source, download=not args.no_download))
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
