"""scikit-learn's bundled digits (1797 8x8 images): the offline dataset of demos and benchmarks."""
import torch


def symmetric_noise(labels, fraction, num_classes, generator):
    """A copy of ``labels`` in which round(fraction·n) randomly chosen labels are replaced by a
    uniformly drawn *different* class (symmetric label noise), drawn from ``generator``."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"noise must be in [0, 1), got {fraction!r}")
    labels = labels.clone()
    flip = torch.randperm(len(labels), generator=generator)[:int(round(fraction * len(labels)))]
    shift = torch.randint(1, num_classes, (len(flip),), generator=generator)
    labels[flip] = (labels[flip] + shift) % num_classes
    return labels


def load_digits_split(test_size=360, seed=0, noise=0.0):
    """Return ``(x_train, y_train, x_test, y_test)``: [n, 1, 8, 8] floats in [0, 1] and labels.

    The split is a fixed permutation drawn with ``seed``. ``noise`` replaces that fraction of the
    training labels by a different class chosen uniformly (symmetric label noise); the test
    labels stay clean.
    """
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"noise must be in [0, 1), got {noise!r}")
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(y), generator=g)
    train, test = order[test_size:], order[:test_size]
    return x[train], symmetric_noise(y[train], noise, 10, g), x[test], y[test]
