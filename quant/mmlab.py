"""mmengine: LSQ fine-tuning of a full-precision classifier (vsam.txt Sec. 4.5).

Importing this module registers ``QuantizedClassifier`` in mmengine's root MODELS:

    model = dict(type='QuantizedClassifier', net=dict(type='cifar_resnet18', num_classes=10),
                 fp_checkpoint='work_dirs/resnet18_sgd/epoch_200.pth',
                 quantize=dict(w_bits=4, a_bits=4, first_last_bits=8))

It builds the ImageClassifier, loads the full-precision weights of its net, checks that they
belong to the same architecture, and converts the net with :func:`quant.quantize_model`, all
while the Runner builds the model, so a wrong checkpoint fails before any training. The step
sizes stay out of the sharpness-aware ascent by the configs'
``paramwise_cfg=dict(custom_keys={'quantizer.step': dict(rho=0.0)})`` (quant/optim.py).
"""
from mmengine.registry import MODELS

from arsam.mmlab.checkpoint import load_checkpoint
from arsam.mmlab.classification import ImageClassifier

from .convert import quantize_model


@MODELS.register_module()
class QuantizedClassifier(ImageClassifier):
    """An :class:`ImageClassifier` whose net is LSQ-quantized at construction.

    Args:
        net, label_smoothing, data_preprocessor, init_cfg: as ImageClassifier's.
        fp_checkpoint: path of the full-precision weights: an mmengine checkpoint of an
            ImageClassifier (``state_dict`` with ``net.`` keys) or a plain state_dict of the net;
            None starts from the net's initialization (e.g. when resuming a quantized run, whose
            checkpoint holds the quantized state). Loaded weights-only, any mmengine scheme
            (:func:`arsam.mmlab.checkpoint.load_checkpoint`).
        quantize: keyword arguments of :func:`quant.quantize_model`.
    """

    def __init__(self, net, fp_checkpoint=None, quantize=None, **kwargs):
        super().__init__(net, **kwargs)
        if fp_checkpoint is not None:
            load_full_precision(self.net, fp_checkpoint)
        quantize_model(self.net, **(quantize or {}))


def load_full_precision(net, path):
    """Load the float weights at ``path`` into ``net``; ValueError naming the mismatches when
    they come from another architecture (missing or unexpected keys, other shapes)."""
    checkpoint = load_checkpoint(path, map_location="cpu")
    state = checkpoint.get("state_dict", checkpoint)
    if any(k.startswith("net.") for k in state):
        state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    own = net.state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    problems += [f"{k}: shape {tuple(state[k].shape)} in the checkpoint, {tuple(v.shape)} in "
                 "the model" for k, v in own.items() if k in state and state[k].shape != v.shape]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... ({len(problems)} in all)"
                                           if len(problems) > 5 else "")
        raise ValueError(f"fp_checkpoint {path!r} does not hold a full-precision "
                         f"{type(net).__name__} of this architecture: {shown}")
    net.load_state_dict(state)
