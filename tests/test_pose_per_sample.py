"""Per-sample losses of mmpose's TopdownPoseEstimator against hand-computed references."""
import pytest
import torch

import pose  # noqa: F401  (first: mmcv._ext stand-in, registrations)
from arsam.mmlab.per_sample import find_per_sample_loss
from mmengine.structures import InstanceData, PixelData
from mmpose.models.pose_estimators import TopdownPoseEstimator
from mmpose.registry import MODELS
from mmpose.structures import PoseDataSample
from mmpose.utils import register_all_modules

register_all_modules(init_default_scope=False)
K = 5  # keypoints


def tiny_estimator(**loss):
    """mmpose's SimpleBaseline layout (ResNet-18, 8 base channels, 2 deconvs), 5 keypoints."""
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type="TopdownPoseEstimator",
        backbone=dict(type="ResNet", depth=18, stem_channels=8, base_channels=8),
        head=dict(type="HeatmapHead", in_channels=64, out_channels=K,
                  deconv_out_channels=(16, 16), deconv_kernel_sizes=(4, 4),
                  loss=dict(type="KeypointMSELoss", use_target_weight=True, **loss))))
    return model.train()


def batch():
    """3 samples 64x64 (heatmaps 8x8), keypoint weights with zeros."""
    g = torch.Generator().manual_seed(1)
    inputs = torch.randn(3, 3, 64, 64, generator=g)
    weights = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 0, 1], [0, 0, 0, 0, 1.]])
    samples = [PoseDataSample(gt_fields=PixelData(heatmaps=torch.rand(K, 8, 8, generator=g)),
                              gt_instance_labels=InstanceData(keypoint_weights=w[None]))
               for w in weights]
    return inputs, samples, weights


def training_loss(model, inputs, samples):
    losses = model.loss(inputs, samples)
    return sum(v for k, v in losses.items() if "loss" in k)


def test_registered_for_topdown():
    assert find_per_sample_loss(tiny_estimator()) is pose.topdown_per_sample_loss


@pytest.mark.parametrize("loss_weight", [1.0, 2.5])
def test_matches_reference_and_training_loss(loss_weight):
    model = tiny_estimator(loss_weight=loss_weight)
    inputs, samples, weights = batch()
    per_sample = pose.topdown_per_sample_loss(model, inputs, samples)
    heatmaps = model.head.forward(model.extract_feat(inputs))
    targets = torch.stack([s.gt_fields.heatmaps for s in samples])
    # mean over keypoints and pixels of w_k * (pred - target)^2, times loss_weight
    expected = loss_weight * ((heatmaps - targets) ** 2 * weights[:, :, None, None]).mean((1, 2, 3))
    torch.testing.assert_close(per_sample, expected, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(per_sample.mean(), training_loss(model, inputs, samples),
                               rtol=1e-6, atol=1e-9)


def test_gradient_of_mean_is_the_training_gradient():
    model = tiny_estimator()
    inputs, samples, _ = batch()
    pose.topdown_per_sample_loss(model, inputs, samples).mean().backward()
    ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    training_loss(model, inputs, samples).backward()
    for a, b in zip(ours, [p.grad for p in model.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)


def test_other_heads_and_overridden_loss_are_refused():
    model = tiny_estimator()
    inputs, samples, _ = batch()

    class Custom(TopdownPoseEstimator):
        def loss(self, inputs, data_samples):
            return super().loss(inputs, data_samples)

    model.__class__ = Custom
    with pytest.raises(TypeError, match="per-sample losses follow TopdownPoseEstimator.loss; "
                                        "Custom overrides it"):
        pose.topdown_per_sample_loss(model, inputs, samples)
    model.__class__ = TopdownPoseEstimator
    model.head = torch.nn.Identity()
    with pytest.raises(TypeError, match="per-sample losses need a head using HeatmapHead.loss, "
                                        "got Identity in TopdownPoseEstimator"):
        pose.topdown_per_sample_loss(model, inputs, samples)


def test_multi_instance_samples_are_refused():
    model = tiny_estimator()
    inputs, samples, _ = batch()
    samples[0].gt_instance_labels = InstanceData(keypoint_weights=torch.ones(2, K))
    with pytest.raises(ValueError, match="top-down samples hold one instance each; got 4 "
                                         "keypoint weight rows for 3 samples"):
        pose.topdown_per_sample_loss(model, inputs, samples)
