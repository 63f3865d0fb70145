"""Converting a float model to LSQ quantization-aware training: :func:`quantize_model`."""
import operator
import warnings
from typing import Optional, Sequence, Set

import torch
import torch.nn.functional as F
from torch import fx, nn

from arsam.engine import check_arg

from .layers import QUANTIZED
from .lsq import check_bits

#: modules and functions whose output is never negative
NONNEGATIVE = (nn.ReLU, nn.Sigmoid, nn.Hardsigmoid, nn.Softmax)  # + Hardtanh(min >= 0), ReLU6
NONNEGATIVE_FUNCTIONS = {F.relu, F.relu6, torch.relu, torch.relu_, torch.sigmoid, F.sigmoid,
                         F.hardsigmoid, F.softmax, torch.softmax, "relu", "relu_", "sigmoid",
                         "softmax"}
#: modules and functions whose output is non-negative when their (first) input is
SIGN_PRESERVING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
                   nn.Dropout, nn.Identity, nn.Flatten, nn.Upsample)
SIGN_PRESERVING_FUNCTIONS = {torch.flatten, torch.reshape, F.max_pool2d, F.avg_pool2d,
                             F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.dropout,
                             F.interpolate, "view", "reshape", "flatten", "contiguous", "mean",
                             "squeeze", "unsqueeze", "permute", "transpose"}
#: ... and those that are non-negative when all their tensor inputs are
ALL_INPUTS = {operator.add, operator.iadd, torch.cat}


def quantize_model(model: nn.Module, w_bits: int = 4, a_bits: int = 4,
                   first_last_bits: Optional[int] = 8, skip: Sequence[str] = (),
                   per_channel: bool = True) -> nn.Module:
    """Swap every ``nn.Conv2d`` and ``nn.Linear`` of ``model`` for its LSQ version, in place.

    Each quantized layer quantizes its weight (signed; one step per output channel unless
    ``per_channel=False``, the LSQ paper's per-tensor step) and its *input* activation (one step).
    An input is quantized unsigned when the model's graph proves it non-negative: traced with
    torch.fx, its producer is a ReLU/ReLU6/sigmoid/softmax, possibly through pooling, flatten,
    dropout, reshapes, or sums/concatenations of such inputs; otherwise (the model input, a
    residual sum of BatchNorm outputs, MobileNetV2's linear bottleneck, a model fx cannot trace)
    it is signed, which never clips a negative value.

    Args:
        w_bits, a_bits: weight and activation precision, ints in [2, 8].
        first_last_bits: precision of the first and last quantizable layer (in module order),
            weights and input; None keeps them full precision.
        skip: names (as in ``named_modules``) of Conv2d/Linear layers kept full precision.
        per_channel: per-output-channel weight steps.

    Returns the model. Raises ValueError, before changing anything, for bits outside [2, 8], an
    unknown or non-quantizable name in ``skip``, or when no layer is left to quantize.
    """
    check_bits("w_bits", w_bits)
    check_bits("a_bits", a_bits)
    if first_last_bits is not None:
        check_bits("first_last_bits", first_last_bits)
    check_arg("skip", skip, not isinstance(skip, str), "a sequence of layer names, not a string")
    layers = [name for name, m in model.named_modules() if type(m) in QUANTIZED]
    if not layers:
        raise ValueError(f"quantize_model: {type(model).__name__} has no nn.Conv2d or nn.Linear "
                         "layer to quantize")
    unknown = sorted(set(skip) - set(layers))
    if unknown:
        raise ValueError(f"skip names {unknown} that are not nn.Conv2d/nn.Linear layers of the "
                         "model")
    bits = {name: (w_bits, a_bits) for name in layers}
    for name in {layers[0], layers[-1]}:
        bits[name] = (first_last_bits, first_last_bits)
    chosen = [n for n in layers if n not in skip and bits[n][0] is not None]
    if not chosen:
        raise ValueError("quantize_model: no layer left to quantize (all are skipped or first/"
                         "last with first_last_bits=None)")
    unsigned = nonnegative_inputs(model, chosen)
    modules = dict(model.named_modules())
    for name in chosen:
        layer = modules[name]
        QUANTIZED[type(layer)].convert(layer, *bits[name], a_signed=name not in unsigned,
                                       per_channel=per_channel)
    return model


def nonnegative_inputs(model: nn.Module, names: Sequence[str]) -> Set[str]:
    """The names among ``names`` whose input the fx graph of ``model`` proves non-negative."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as error:  # fx raises many types; any failure means "unsure": all signed
        warnings.warn(f"quantize_model: torch.fx cannot trace {type(model).__name__} ({error}); "
                      "every activation is quantized signed", stacklevel=3)
        return set()
    modules = dict(model.named_modules())
    seen = {}
    for node in graph.nodes:
        if node.op == "call_module" and node.target in names:
            ok = _nonnegative(_first_input(node), modules)
            seen[node.target] = seen.get(node.target, True) and ok
    return {name for name, ok in seen.items() if ok}


def _nonnegative(node, modules):
    if not isinstance(node, fx.Node):
        return isinstance(node, (int, float)) and node >= 0
    if node.op == "call_module":
        module = modules[node.target]
        if isinstance(module, NONNEGATIVE) or (isinstance(module, nn.Hardtanh)
                                               and module.min_val >= 0):
            return True
        return isinstance(module, SIGN_PRESERVING) and _nonnegative(_first_input(node), modules)
    if node.op not in ("call_function", "call_method"):
        return False
    if node.target in NONNEGATIVE_FUNCTIONS:
        return True
    if node.target in SIGN_PRESERVING_FUNCTIONS:
        return _nonnegative(_first_input(node), modules)
    if node.target in ALL_INPUTS:
        inputs = node.args[0] if node.target is torch.cat else node.args
        return all(_nonnegative(a, modules) for a in inputs)
    return False


def _first_input(node):
    return node.args[0] if node.args else next(iter(node.kwargs.values()), None)
