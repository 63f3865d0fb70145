"""LSQ quantization-aware training driven by the sharpness-aware optimizers of :mod:`arsam`."""
from .convert import quantize_model
from .export import export_quantized, integer_forward
from .layers import QuantConv2d, QuantLinear
from .lsq import LSQQuantizer
from .optim import lsq_param_groups

__all__ = ["LSQQuantizer", "QuantConv2d", "QuantLinear", "quantize_model", "lsq_param_groups",
           "export_quantized", "integer_forward"]
