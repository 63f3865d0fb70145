"""scikit-learn's bundled digits (1797 8x8 images): the offline dataset of demos and benchmarks."""
import torch


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
    y_train = y[train].clone()
    flip = torch.randperm(len(train), generator=g)[:int(round(noise * len(train)))]
    y_train[flip] = (y_train[flip] + torch.randint(1, 10, (len(flip),), generator=g)) % 10
    return x[train], y_train, x[test], y[test]
