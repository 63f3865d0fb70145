"""Per-sample losses of mmpose's TopdownPoseEstimator with a HeatmapHead (the protocol of
arsam/mmlab/per_sample.py).

Sample i's loss is the head's configured loss module (e.g. KeypointMSELoss with target weights,
skip_empty_channel, loss_weight) on sample i's predicted and target heatmaps and keypoint
weights, gathered as ``HeatmapHead.loss`` gathers them; backbone, neck and head run once on the
whole batch. For the mean-reduced heatmap losses the batch mean equals the training loss.
"""
import torch
from mmpose.models.heads import HeatmapHead
from mmpose.models.pose_estimators import TopdownPoseEstimator

from arsam.mmlab.per_sample import register_per_sample_loss


@register_per_sample_loss(TopdownPoseEstimator)
def topdown_per_sample_loss(model, inputs, data_samples):
    """Per-instance training losses ``[n]`` of a top-down estimator (see the module docstring)."""
    head, name = model.head, type(model).__name__
    if type(model).loss is not TopdownPoseEstimator.loss:
        raise TypeError(f"per-sample losses follow TopdownPoseEstimator.loss; {name} overrides it")
    if not isinstance(head, HeatmapHead) or type(head).loss is not HeatmapHead.loss:
        raise TypeError(f"per-sample losses need a head using HeatmapHead.loss, got "
                        f"{type(head).__name__} in {name}")
    heatmaps = head.forward(model.extract_feat(inputs))
    targets = torch.stack([d.gt_fields.heatmaps for d in data_samples])
    weights = torch.cat([d.gt_instance_labels.keypoint_weights for d in data_samples])
    if len(weights) != len(data_samples):
        raise ValueError(f"top-down samples hold one instance each; got {len(weights)} keypoint "
                         f"weight rows for {len(data_samples)} samples")
    return torch.stack([head.loss_module(heatmaps[i:i + 1], targets[i:i + 1], weights[i:i + 1])
                        for i in range(len(data_samples))])
