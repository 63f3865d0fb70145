"""Per-sample losses of mmpretrain's ImageClassifier (the protocol of arsam/mmlab/per_sample.py),
so that mmpretrain's own configs train with ESAM and K-SAM (configs/mmpretrain/).

Sample i's loss is the head's configured loss module (``CrossEntropyLoss``, ``LabelSmoothLoss``,
... with its loss_weight and class weights) on sample i's score and target, the target being
the label or, after batch augmentation (Mixup, CutMix), the soft ``gt_score``, as
``ClsHead._get_loss`` takes it. Backbone, neck and head run once on the whole batch. The training
loss averages over the batch (``avg_factor`` = batch size), so the batch mean of these losses
equals it. Classifiers or heads that compute their loss otherwise are refused with a TypeError.
"""
import torch
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.models.heads import ClsHead

from .per_sample import register_per_sample_loss


@register_per_sample_loss(ImageClassifier)
def image_classifier_per_sample_loss(model, inputs, data_samples):
    """Per-image training losses ``[n]`` of an mmpretrain ImageClassifier (module docstring)."""
    head, name = model.head, type(model).__name__
    if type(model).loss is not ImageClassifier.loss:
        raise TypeError(f"per-sample losses follow ImageClassifier.loss; {name} overrides it")
    if not isinstance(head, ClsHead) or type(head).loss is not ClsHead.loss or (
            type(head)._get_loss is not ClsHead._get_loss):
        raise TypeError(f"per-sample losses need a head computing its loss as ClsHead does, got "
                        f"{type(head).__name__} in {name}")
    scores = head(model.extract_feat(inputs))
    if "gt_score" in data_samples[0]:
        target = torch.stack([d.gt_score for d in data_samples])
    else:
        target = torch.cat([d.gt_label for d in data_samples])
    return head.loss_module(scores, target, reduction_override="none")
