"""Quantized Conv2d and Linear: LSQ on the layer's weight and on its input activation.

They are the torch layers themselves with two quantizers attached (``weight_quantizer``,
``input_quantizer``), so parameters, hooks and state_dict keys of the original layer stay; the
forward runs the same operation on the fake-quantized operands.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .lsq import LSQQuantizer


class QuantizedLayer:
    """Mixin: ``_op(x, w)`` is the layer's operation (bias included) on given operands."""

    @classmethod
    def convert(cls, layer: nn.Module, w_bits: int, a_bits: int, a_signed: bool,
                per_channel: bool = True) -> nn.Module:
        """Turn ``layer`` (of the float class) into this class in place and return it.

        The weight quantizer is signed and initialized from the current weights now, so that its
        step has its final shape before an optimizer is built; the input quantizer is
        initialized by the first forward.
        """
        layer.__class__ = cls
        layer.weight_quantizer = LSQQuantizer(w_bits, True, per_channel=per_channel)
        layer.weight_quantizer.to(layer.weight.device).initialize(layer.weight)
        layer.input_quantizer = LSQQuantizer(a_bits, a_signed, activation=True).to(
            layer.weight.device)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._op(self.input_quantizer(x), self.weight_quantizer(self.weight))


class QuantConv2d(QuantizedLayer, nn.Conv2d):
    def _op(self, x, w):
        return self._conv_forward(x, w, self.bias)


class QuantLinear(QuantizedLayer, nn.Linear):
    def _op(self, x, w):
        return F.linear(x, w, self.bias)


#: float layer class -> quantized class (exact types: subclasses may override forward)
QUANTIZED = {nn.Conv2d: QuantConv2d, nn.Linear: QuantLinear}
