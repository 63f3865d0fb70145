"""The offline digits split and its symmetric label noise."""
import pytest
import torch

from arsam.digits import load_digits_split, symmetric_noise


def test_symmetric_noise_moves_exactly_the_fraction_to_other_classes():
    labels = torch.arange(20) % 4
    noisy = symmetric_noise(labels, 0.25, 4, torch.Generator().manual_seed(0))
    changed = noisy != labels
    assert changed.sum().item() == 5
    assert ((noisy >= 0) & (noisy < 4)).all()
    g = torch.Generator().manual_seed(0)
    flip = torch.randperm(20, generator=g)[:5]
    shift = torch.randint(1, 4, (5,), generator=g)
    expected = labels.clone()
    expected[flip] = (labels[flip] + shift) % 4
    assert torch.equal(noisy, expected)
    assert torch.equal(labels, torch.arange(20) % 4), "the input is not modified"
    with pytest.raises(ValueError, match=r"noise must be in \[0, 1\), got 1.0"):
        symmetric_noise(labels, 1.0, 4, g)


def test_digits_split_is_fixed_and_noise_touches_training_labels_only():
    clean, noisy = load_digits_split(), load_digits_split(noise=0.2)
    assert clean[0].shape == (1437, 1, 8, 8) and clean[2].shape == (360, 1, 8, 8)
    assert clean[0].dtype == torch.float32 and clean[0].min() >= 0 and clean[0].max() <= 1
    torch.testing.assert_close(noisy[0], clean[0], rtol=0, atol=0)
    assert torch.equal(noisy[3], clean[3])
    assert (noisy[1] != clean[1]).sum().item() == round(0.2 * 1437)
    assert torch.equal(load_digits_split(noise=0.2)[1], noisy[1])
