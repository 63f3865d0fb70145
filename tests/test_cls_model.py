"""ImageClassifier: losses against a hand-written cross-entropy, predictions; PyramidNet."""
import pytest
import torch

from arsam.mmlab.classification import ImageClassifier
from arsam.mmlab.per_sample import find_per_sample_loss
from arsam.nets import mobilenet_v1_cifar, pyramidnet


def tiny(label_smoothing=0.0):
    torch.manual_seed(0)
    return ImageClassifier(dict(type="small_cnn", num_classes=4, in_channels=1, width=4),
                           label_smoothing=label_smoothing)


def reference_ce(logits, labels, eps):
    logp = logits.double().log_softmax(1)
    nll = -logp[torch.arange(len(labels)), labels]
    return ((1 - eps) * nll - eps * logp.mean(1)).float()  # smoothed target: eps/C everywhere


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_loss_per_sample_matches_loss_and_reference(eps):
    model = tiny(eps).eval()
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 3, 1, 1, 2, 0])
    per_sample = model.loss_per_sample(x, y)
    assert per_sample.shape == (6,)
    torch.testing.assert_close(per_sample, reference_ce(model(x), y, eps), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(per_sample.mean(), model(x, y, mode="loss")["loss"],
                               rtol=1e-6, atol=1e-7)
    # the protocol finds the method, and a list of ints works as data samples too
    torch.testing.assert_close(find_per_sample_loss(model)(model, x, y.tolist()), per_sample)


def test_predict_and_tensor_modes():
    model = tiny().eval()
    x, y = torch.randn(3, 1, 8, 8), torch.tensor([2, 0, 1])
    logits = model(x)
    torch.testing.assert_close(logits, model.net(x))
    predictions = model(x, y, mode="predict")
    assert [int(p["gt_label"]) for p in predictions] == [2, 0, 1]
    for p, row in zip(predictions, logits):
        torch.testing.assert_close(p["pred_score"], row.softmax(0))
        assert int(p["pred_label"]) == int(row.argmax())
    assert "gt_label" not in model(x, mode="predict")[0]


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"mode must be 'loss', 'predict' or 'tensor', got 'x'"):
        tiny()(torch.randn(1, 1, 8, 8), mode="x")
    with pytest.raises(ValueError, match=r"net must be a dict with 'type' in \[.*'pyramidnet'"):
        ImageClassifier(dict(type="resnet1000"))
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\), got 1.0"):
        ImageClassifier(dict(type="small_cnn"), label_smoothing=1.0)


def test_train_step_updates_with_sgd():
    from mmengine.optim import OptimWrapper
    model = tiny()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    batch = dict(inputs=torch.randn(4, 1, 8, 8), data_samples=torch.tensor([0, 1, 2, 3]))
    before = model.net.fc.weight.detach().clone()
    log = model.train_step(batch, wrapper)
    assert set(log) == {"loss"} and not torch.equal(before, model.net.fc.weight)


def test_pyramidnet_widths_and_shape():
    net = pyramidnet(depth=14, alpha=12, num_classes=3)   # n = 2 blocks per stage, +2 per block
    blocks = [m for m in net if hasattr(m, "extra")]
    assert [b.body[1].out_channels for b in blocks] == [18, 20, 22, 24, 26, 28]
    assert [b.body[1].stride[0] for b in blocks] == [1, 1, 2, 1, 2, 1]
    assert net[-1].in_features == 28
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    full = pyramidnet()  # PyramidNet-110, alpha 270: 16 -> 286 channels over 54 blocks
    assert full[-1].in_features == 286 and sum(hasattr(m, "extra") for m in full) == 54
    with pytest.raises(ValueError, match=r"depth must be an int 6n\+2 >= 8, got 110.0"):
        pyramidnet(depth=110.0)


def test_mobilenet_v1_is_the_vsam_authors_layout():
    """3x3/2 stem, 13 depthwise-separable blocks with the ImageNet strides (the last two both 2),
    ReLU6, no conv biases; a 32x32 input reaches the pool at 1x1."""
    net = mobilenet_v1_cifar(num_classes=10)
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    depthwise = convs[1::2]
    assert len(convs) == 27 and all(c.bias is None for c in convs)
    assert convs[0].stride == (2, 2) and convs[0].out_channels == 32
    assert all(c.groups == c.in_channels == c.out_channels for c in depthwise)
    assert [c.stride[0] for c in depthwise] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 2]
    assert [c.out_channels for c in convs[2::2]] == [64, 128, 128, 256, 256, 512, 512, 512, 512,
                                                     512, 512, 1024, 1024]
    assert sum(isinstance(m, torch.nn.ReLU6) for m in net) == 27
    assert net[-1].in_features == 1024 and net[-1].out_features == 10
    assert net[:-3](torch.randn(2, 3, 32, 32)).shape == (2, 1024, 1, 1)
    assert mobilenet_v1_cifar(num_classes=3, width_mult=0.25)(torch.randn(2, 3, 32, 32)).shape \
        == (2, 3)
