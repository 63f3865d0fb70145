"""Per-sample losses of mmseg's EncoderDecoder (the protocol of arsam/mmlab/per_sample.py).

Sample i's loss is what the model's own ``loss`` would give on image i alone: each head's
configured ``loss_decode`` (loss_weight, class weights, ignore_index, avg_non_ignore, sampler)
evaluated through the head's ``loss_by_feat`` on that image's logits, the decode head's and
auxiliary heads' ``loss*`` terms summed as ``BaseModel.parse_losses`` sums them. The backbone and
heads run once on the whole batch (BatchNorm sees the batch as in training).

With mmseg's default (avg_non_ignore=False, a mean over all pixels) the batch mean of these losses
equals the training loss exactly; with avg_non_ignore=True it does when images have equal numbers
of valid pixels.
"""
import torch
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.segmentors import EncoderDecoder
from torch import nn

from arsam.mmlab.per_sample import register_per_sample_loss


def _heads(model):
    """The decode and auxiliary heads, once model and heads are known to compute their losses
    as EncoderDecoder and BaseDecodeHead do."""
    heads = [model.decode_head]
    if model.with_auxiliary_head:
        aux = model.auxiliary_head
        heads += list(aux) if isinstance(aux, nn.ModuleList) else [aux]
    cls = type(model)
    name = cls.__name__
    if cls.loss is not EncoderDecoder.loss or (
            cls._decode_head_forward_train is not EncoderDecoder._decode_head_forward_train):
        raise TypeError(f"per-sample losses follow EncoderDecoder.loss; {name} overrides it")
    for head in heads:
        if type(head).loss is not BaseDecodeHead.loss:
            raise TypeError(f"per-sample losses follow BaseDecodeHead.loss; "
                            f"{type(head).__name__} of {name} overrides it")
    return heads


def sum_losses(losses):
    """The training loss of a loss dict: its ``loss*`` terms summed as ``parse_losses`` does."""
    return sum(value.mean() if torch.is_tensor(value) else sum(v.mean() for v in value)
               for key, value in losses.items() if "loss" in key)


@register_per_sample_loss(EncoderDecoder)
def encoder_decoder_per_sample_loss(model, inputs, data_samples):
    """Per-image training losses ``[n]`` of an EncoderDecoder (see the module docstring)."""
    heads = _heads(model)
    feats = model.extract_feat(inputs)
    logits = [head.forward(feats) for head in heads]
    return torch.stack([
        sum(sum_losses(head.loss_by_feat(out[i:i + 1], [sample]))
            for head, out in zip(heads, logits))
        for i, sample in enumerate(data_samples)])
