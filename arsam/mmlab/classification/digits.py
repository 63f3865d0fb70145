"""scikit-learn's bundled digits (8x8 grayscale, 1797 images): a fixed split and label noise.

Plain numpy, no download; shared by the ``Digits`` dataset and the benchmarks.
"""
import numpy as np

from ...engine import check_arg

NUM_CLASSES = 10


def load_digits_split(split="train", test_size=360, seed=0):
    """Images ``[n, 1, 8, 8]`` float32 (pixel values 0..16) and int64 labels of one split.

    A permutation of the 1797 images drawn with ``seed`` puts the last ``test_size`` in the test
    split and the rest (1437 by default) in the train split.
    """
    from sklearn.datasets import load_digits
    check_arg("split", split, split in ("train", "test"), "'train' or 'test'")
    check_arg("test_size", test_size, isinstance(test_size, int) and 0 < test_size < 1797,
              "an int in [1, 1796]")
    images, labels = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(labels))
    index = order[:-test_size] if split == "train" else order[-test_size:]
    return (images[index].reshape(-1, 1, 8, 8).astype(np.float32),
            labels[index].astype(np.int64))


def symmetric_label_noise(labels, fraction, num_classes=NUM_CLASSES, seed=0):
    """A copy of ``labels`` where exactly ``round(fraction * n)`` samples, drawn with ``seed``,
    take a label drawn uniformly among the ``num_classes - 1`` other classes."""
    check_arg("fraction", fraction, isinstance(fraction, (int, float)) and 0 <= fraction <= 1,
              "in [0, 1]")
    rng = np.random.default_rng(seed)
    noisy = np.array(labels, dtype=np.int64)
    flip = rng.choice(len(noisy), size=int(round(fraction * len(noisy))), replace=False)
    noisy[flip] = (noisy[flip] + rng.integers(1, num_classes, size=len(flip))) % num_classes
    return noisy
