"""Per-sample losses of mmseg's EncoderDecoder against hand-computed references."""
import pytest
import torch
import torch.nn.functional as F

import seg  # noqa: F401  (first: mmcv._ext stand-in, registrations)
from arsam.mmlab.per_sample import find_per_sample_loss
from mmengine.structures import PixelData
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmseg.utils import register_all_modules

register_all_modules(init_default_scope=False)
IGNORE = 255


def tiny_fcn(avg_non_ignore=False):
    """mmseg's FCN (ResNetV1c-18 layout, 8 base channels) with an auxiliary head, 3 classes."""
    bn = dict(type="BN", requires_grad=True)
    head = dict(type="FCNHead", in_index=3, in_channels=64, channels=16, num_convs=2,
                concat_input=True, dropout_ratio=0.0, num_classes=3, norm_cfg=bn,
                loss_decode=dict(type="CrossEntropyLoss", loss_weight=1.0,
                                 avg_non_ignore=avg_non_ignore))
    aux = dict(head, in_index=2, in_channels=32, channels=8, num_convs=1, concat_input=False,
               loss_decode=dict(head["loss_decode"], loss_weight=0.4))
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type="EncoderDecoder",
        backbone=dict(type="ResNetV1c", depth=18, stem_channels=8, base_channels=8,
                      dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1), norm_cfg=bn,
                      contract_dilation=True),
        decode_head=head, auxiliary_head=aux))
    return model.train()


def batch(ignored=(3, 40, 0)):
    """3 images 32x32 with random labels; image i has ignored[i] pixels set to ignore_index."""
    g = torch.Generator().manual_seed(1)
    inputs = torch.randn(3, 3, 32, 32, generator=g)
    samples = []
    for n in ignored:
        label = torch.randint(0, 3, (1, 32, 32), generator=g)
        label.view(-1)[torch.randperm(32 * 32, generator=g)[:n]] = IGNORE
        samples.append(SegDataSample(gt_sem_seg=PixelData(data=label)))
    return inputs, samples


def reference(model, inputs, samples, avg_non_ignore):
    """Per image: sum over heads of loss_weight * CE over its pixels, averaged over all pixels
    (mmseg's default) or over the non-ignored ones (avg_non_ignore)."""
    feats = model.extract_feat(inputs)
    heads = [(model.decode_head, 1.0), (model.auxiliary_head, 0.4)]
    losses = []
    for i, sample in enumerate(samples):
        label = sample.gt_sem_seg.data
        total = 0.0
        for head, weight in heads:
            logits = F.interpolate(head.forward(feats)[i:i + 1], size=label.shape[1:],
                                   mode="bilinear", align_corners=False)
            ce = F.cross_entropy(logits, label, ignore_index=IGNORE, reduction="sum")
            total = total + weight * ce / (int((label != IGNORE).sum()) if avg_non_ignore
                                           else label.numel())
        losses.append(total)
    return torch.stack(losses)


def training_loss(model, inputs, samples):
    losses = model.loss(inputs, samples)
    return sum(v for k, v in losses.items() if "loss" in k)


def test_registered_for_encoder_decoder():
    assert find_per_sample_loss(tiny_fcn()) is seg.encoder_decoder_per_sample_loss


def test_default_loss_matches_reference_and_training_loss_exactly():
    model = tiny_fcn()
    inputs, samples = batch()
    per_sample = seg.encoder_decoder_per_sample_loss(model, inputs, samples)
    assert per_sample.shape == (3,)
    torch.testing.assert_close(per_sample, reference(model, inputs, samples, False),
                               rtol=1e-6, atol=1e-7)
    # mmseg averages over all pixels: the batch mean is the training loss for any ignore counts
    torch.testing.assert_close(per_sample.mean(), training_loss(model, inputs, samples),
                               rtol=1e-6, atol=1e-7)


def test_avg_non_ignore_averages_each_image_over_its_valid_pixels():
    model = tiny_fcn(avg_non_ignore=True)
    inputs, samples = batch(ignored=(3, 40, 0))
    per_sample = seg.encoder_decoder_per_sample_loss(model, inputs, samples)
    torch.testing.assert_close(per_sample, reference(model, inputs, samples, True),
                               rtol=1e-6, atol=1e-7)
    inputs, samples = batch(ignored=(17, 17, 17))  # equal valid counts: the training loss
    torch.testing.assert_close(seg.encoder_decoder_per_sample_loss(model, inputs, samples).mean(),
                               training_loss(model, inputs, samples), rtol=1e-6, atol=1e-7)


def test_gradient_of_mean_is_the_training_gradient():
    model = tiny_fcn()
    inputs, samples = batch()
    seg.encoder_decoder_per_sample_loss(model, inputs, samples).mean().backward()
    ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    training_loss(model, inputs, samples).backward()
    for a, b in zip(ours, [p.grad for p in model.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)


def test_subclass_overriding_loss_is_refused():
    class Custom(EncoderDecoder):
        def loss(self, inputs, data_samples):
            return super().loss(inputs, data_samples)

    model = tiny_fcn()
    model.__class__ = Custom
    with pytest.raises(TypeError, match="per-sample losses follow EncoderDecoder.loss; "
                                        "Custom overrides it"):
        seg.encoder_decoder_per_sample_loss(model, *batch())
