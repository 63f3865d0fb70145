"""Learned Step size Quantization (LSQ, Esser et al., ICLR 2020).

A tensor x is fake-quantized with a learnable step size s on the integer grid [-Q_N, Q_P]
(signed b bits: Q_N = 2^(b-1), Q_P = 2^(b-1) - 1; unsigned: Q_N = 0, Q_P = 2^b - 1):

    x̄ = ⌊clip(x/s, -Q_N, Q_P)⌉        (the integer code, Eq. 1)
    x̂ = x̄·s                           (Eq. 2)

Rounding passes gradients straight through, so ∂x̂/∂x = 1 inside the grid, 0 outside, and

    ∂x̂/∂s = -Q_N                  if x/s <= -Q_N
            ⌊x/s⌉ - x/s           if -Q_N < x/s < Q_P        (Eq. 3)
            Q_P                   if x/s >= Q_P

the step's gradient being scaled by g = 1/√(N·Q_P) (Sec. 2.2): for weights N = N_W, the number of
weights quantized with that step (the layer's, or one output channel's); for activations
N = N_F, the number of features of the layer *per example* (the input's elements divided by the
batch size), so g depends neither on the batch size nor on which subset of the batch a pass sees
(K-SAM's K1/K2 passes and ESAM's γB pass scale like the full batch). s is initialized from the
first data seen: s = 2·mean(|x|)/√Q_P.
"""
import math
from typing import Tuple

import torch
import torch.distributed as dist
from torch import nn

from arsam.engine import check_arg

BITS = (2, 8)


def check_bits(name: str, bits: int) -> None:
    """ValueError naming ``name`` unless ``bits`` is an int in [2, 8]."""
    check_arg(name, bits, isinstance(bits, int) and not isinstance(bits, bool)
              and BITS[0] <= bits <= BITS[1], f"an int in [{BITS[0]}, {BITS[1]}]")


def grid(bits: int, signed: bool) -> Tuple[int, int]:
    """(Q_N, Q_P): the codes are the integers in [-Q_N, Q_P]."""
    return (2 ** (bits - 1), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)


def codes(x: torch.Tensor, step: torch.Tensor, q_n: int, q_p: int) -> torch.Tensor:
    """The integer codes ⌊clip(x/s, -Q_N, Q_P)⌉ (as floats); ``step`` broadcast against x."""
    return torch.clamp(torch.round(x / step), -q_n, q_p)


class _LSQ(torch.autograd.Function):
    """x̂ = codes(x, s)·s with the straight-through input gradient and Eq. 3 for s, times g."""

    @staticmethod
    def forward(ctx, x, step, q_n, q_p, grad_scale, dims):
        ctx.save_for_backward(x, step)
        ctx.q, ctx.grad_scale, ctx.dims = (q_n, q_p), grad_scale, dims
        return codes(x, step, q_n, q_p) * step

    @staticmethod
    def backward(ctx, grad):
        x, step = ctx.saved_tensors
        q_n, q_p = ctx.q
        v = x / step
        below, above = v <= -q_n, v >= q_p
        inside = ~(below | above)
        d_step = torch.where(below, -float(q_n), torch.where(above, float(q_p), torch.round(v) - v))
        grad_step = (grad * d_step).sum(dim=ctx.dims, keepdim=True) * ctx.grad_scale
        return grad * inside, grad_step.reshape(step.shape), None, None, None, None


class LSQQuantizer(nn.Module):
    """Fake-quantizes its input with a learned step size (see the module docstring).

    Args:
        bits: precision b, an int in [2, 8].
        signed: signed grid [-2^(b-1), 2^(b-1) - 1], else unsigned [0, 2^b - 1].
        per_channel: one step per index of dim 0 (a weight's output channel), else one step.
        activation: the input is a batch of activations (dim 0 the batch): the gradient scale
            counts the features per example (N_F), else the elements sharing a step (N_W).

    Parameters/buffers: ``step`` (shape () per tensor, (C,) per channel; a per-channel quantizer
    not yet initialized holds an empty step, sized by its first forward or a loaded state),
    ``initialized`` (bool). The step is initialized by the first forward (in any mode) unless
    already initialized or loaded; under torch.distributed the initial step is averaged over
    ranks so that every replica starts from the same one.
    """

    def __init__(self, bits: int, signed: bool, per_channel: bool = False,
                 activation: bool = False) -> None:
        super().__init__()
        check_bits("bits", bits)
        check_arg("signed", signed, isinstance(signed, bool), "a bool")
        check_arg("per_channel", per_channel, isinstance(per_channel, bool), "a bool")
        check_arg("activation", activation, isinstance(activation, bool) and not (
            activation and per_channel), "a bool, and False with per_channel (dim 0 of an "
                  "activation is the batch, not channels)")
        self.bits, self.signed, self.per_channel = bits, signed, per_channel
        self.activation = activation
        self.q_n, self.q_p = grid(bits, signed)
        self.step = nn.Parameter(torch.ones(0 if per_channel else ()))
        self.register_buffer("initialized", torch.tensor(False))
        self._ready = False  # mirror of ``initialized``: no device sync per forward

    def _view(self, x):
        """The step shaped to broadcast against x, and the dims each step reduces over."""
        if not self.per_channel:
            return self.step, tuple(range(x.ndim))
        return self.step.reshape((-1,) + (1,) * (x.ndim - 1)), tuple(range(1, x.ndim))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """s = 2·mean(|x|)/√Q_P (per output channel when per_channel), at least 1e-8."""
        dims = tuple(range(1, x.ndim)) if self.per_channel else tuple(range(x.ndim))
        step = (2 * x.detach().abs().mean(dim=dims) / math.sqrt(self.q_p)).clamp_min(1e-8)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(step)
            step /= dist.get_world_size()
        self.step.data = step.to(self.step.dtype)
        self.initialized.fill_(True)
        self._ready = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._ready:
            self.initialize(x)
        step, dims = self._view(x)
        # N of g = 1/√(N·Q_P): N_F per example for activations, N_W per step for weights
        n = x[0].numel() if self.activation else x.numel() // self.step.numel()
        return _LSQ.apply(x, step, self.q_n, self.q_p, 1.0 / math.sqrt(n * self.q_p), dims)

    def integer_codes(self, x: torch.Tensor) -> torch.Tensor:
        """The codes of x on this quantizer's grid, as int8 (b <= 8 bits fit)."""
        step, _ = self._view(x)
        return codes(x.detach(), step.detach(), self.q_n, self.q_p).to(torch.int8)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        step = state_dict.get(prefix + "step")
        if self.per_channel and step is not None and not self._ready:
            self.step.data = torch.empty_like(step, dtype=self.step.dtype, device=self.step.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._ready = bool(self.initialized)

    def extra_repr(self):
        return (f"bits={self.bits}, signed={self.signed}, per_channel={self.per_channel}, "
                f"activation={self.activation}")
