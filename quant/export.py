"""Taking a quantized model away: integer weight codes, step sizes, an integer reference forward.

:func:`export_quantized` gives, for every quantized layer, its b-bit weight codes stored as int8
with their step sizes and what the layer needs to run on integers; :func:`integer_forward` is
the reference: integer input codes x̄ and weight codes w̄ accumulated in int64, then scaled,

    y = (Σ x̄·w̄)·s_w·s_x + b,

which is the fake-quant forward (x̄·s_x) ⊛ (w̄·s_w) + b up to floating-point rounding. The rest of
the model (BatchNorm, full-precision layers) is in its usual ``state_dict``.
"""
from typing import Any, Dict

import torch
import torch.nn.functional as F
from torch import nn

from .layers import QuantizedLayer
from .lsq import codes, grid


def export_quantized(model: nn.Module) -> Dict[str, Dict[str, Any]]:
    """``{layer name: entry}`` for every quantized layer of ``model`` (CPU tensors; saves with
    ``torch.save`` and loads with ``weights_only=True``). An entry holds ``kind`` ('conv2d' or
    'linear'), ``weight_codes`` (int8), ``weight_step`` (per output channel or one),
    ``weight_bits``, ``input_step``, ``input_bits``, ``input_signed``, ``bias`` (or None) and,
    for convolutions, ``stride``, ``dilation``, ``groups``, ``pad`` (F.pad's order) and
    ``pad_mode``. Raises ValueError if an input step was never initialized (run a forward)."""
    exported = {}
    for name, layer in model.named_modules():
        if not isinstance(layer, QuantizedLayer):
            continue
        w_q, x_q = layer.weight_quantizer, layer.input_quantizer
        if not bool(x_q.initialized):
            raise ValueError(f"layer {name!r}: its input step size is not initialized; run a "
                             "forward pass (training or calibration) before exporting")
        entry = dict(kind="linear", weight_codes=w_q.integer_codes(layer.weight).cpu(),
                     weight_step=w_q.step.detach().cpu().clone(), weight_bits=w_q.bits,
                     input_step=x_q.step.detach().cpu().clone(), input_bits=x_q.bits,
                     input_signed=x_q.signed,
                     bias=None if layer.bias is None else layer.bias.detach().cpu().clone())
        if isinstance(layer, nn.Conv2d):
            entry.update(kind="conv2d", stride=tuple(layer.stride),
                         dilation=tuple(layer.dilation), groups=layer.groups,
                         pad=tuple(layer._reversed_padding_repeated_twice),
                         pad_mode="constant" if layer.padding_mode == "zeros"
                         else layer.padding_mode)
        exported[name] = entry
    return exported


def integer_forward(entry: Dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    """The layer of an exported ``entry`` applied to x in integer arithmetic (on the CPU)."""
    x_codes = codes(x.detach().cpu(), entry["input_step"], *grid(entry["input_bits"],
                                                               entry["input_signed"]))
    w_codes = entry["weight_codes"].long()
    if entry["kind"] == "linear":
        acc, shape = x_codes.long() @ w_codes.T, (-1,)
    else:
        acc, shape = _conv2d_int64(x_codes, w_codes, entry), (-1, 1, 1)
    y = acc.double() * (entry["weight_step"] * entry["input_step"]).double().reshape(shape)
    if entry["bias"] is not None:
        y = y + entry["bias"].double().reshape(shape)
    return y.to(device=x.device, dtype=x.dtype)


def _conv2d_int64(x_codes, w_codes, entry):
    """Σ x̄·w̄ of a (grouped) convolution as an int64 matrix product over unfolded patches."""
    x_codes = F.pad(x_codes, entry["pad"], mode=entry["pad_mode"])
    n, (h, w) = len(x_codes), x_codes.shape[-2:]
    out, per_group, kh, kw = w_codes.shape
    groups, (sh, sw), (dh, dw) = entry["groups"], entry["stride"], entry["dilation"]
    patches = F.unfold(x_codes, (kh, kw), dilation=(dh, dw), stride=(sh, sw)).long()
    acc = torch.einsum("ngkl,gok->ngol", patches.reshape(n, groups, per_group * kh * kw, -1),
                       w_codes.reshape(groups, out // groups, per_group * kh * kw))
    return acc.reshape(n, out, (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1)
