"""MSAM: Momentum-SAM (Becker, Altrock and Risse, 2024, arXiv:2401.12033; MarlonBecker/MSAM)."""
from typing import Any

import torch

from ._types import BaseOptimizer, Closure, Params
from .engine import SharpnessAwareOptimizer

#: the base optimizer's state entry holding its momentum v, by the setting that turns it on
MOMENTUM_BUFFERS = {"momentum": "momentum_buffer",  # SGD (and RMSprop): v <- μv + g
                    "betas": "exp_avg"}             # Adam, AdamW: m <- β1·m + (1 - β1)·g


class MSAM(SharpnessAwareOptimizer):
    """SAM's ascent replaced by a step along the negative momentum: one pass per step.

    Each step (the paper's Algorithm 1): ε_t = -ρ·v_t/‖v_t‖ with v_t the base optimizer's momentum
    after the last step; the update uses g = ∇L(w_t + ε_t), v_{t+1} = μ·v_t + g and
    w_{t+1} = w_t - η·v_{t+1} (the base optimizer's step). One forward/backward: SGD's cost;
    no SAM gradient ∇L(w + ρ·g/‖g‖) is computed, so ``stats['sampled']`` is False.
    The first step, with no momentum yet, is a plain base step (ε = 0), as in the authors' code,
    which starts from v = 0. ρ is a radius in weight space, not scaled by the learning rate; the
    authors use ρ = 0.3 for SGD on CIFAR (their default, taken here) and larger ones for AdamW.

    The authors' code keeps the weights at w_t + ε_t between steps (one fewer copy) and moves
    them back for evaluation; here they are at w_t between steps, which gives the same iterates,
    except that the base optimizer's weight decay is taken at w_t instead of w_t + ε_t
    (docs/fidelity.md).

    The base optimizer must keep a momentum: SGD with ``momentum > 0`` in every param group
    (``momentum_buffer``) or Adam/AdamW (``exp_avg``, as the authors' AdamW-MSAM).

    Buffers: 1 weight-sized (the copy of w while perturbed).
    """

    def __init__(self, params: Params, base_optimizer: BaseOptimizer, rho: float = 0.3,
                 **kwargs: Any) -> None:
        super().__init__(params, base_optimizer, rho, **kwargs)
        base = self.base_optimizer
        setting = next((s for s in MOMENTUM_BUFFERS if s in base.defaults), None)
        if setting is None:
            raise ValueError("base_optimizer must keep a momentum for MSAM (SGD with momentum > "
                             f"0, Adam or AdamW), got {type(base).__name__}")
        for i, group in enumerate(self.param_groups):
            if setting == "momentum" and not group["momentum"] > 0:
                raise ValueError(f"param_groups[{i}]['momentum'] of base_optimizer "
                                 f"{type(base).__name__} must be > 0 for MSAM, got "
                                 f"{group['momentum']!r}")
        self.buffer_name = MOMENTUM_BUFFERS[setting]

    @torch.no_grad()
    def descend(self) -> None:
        """w_t -> w_t + ε_t, ε_t = -ρ·v_t/‖v_t‖ (Algorithm 1); nothing while there is no momentum
        or the weights are already there. The step runs it; the mmengine wrapper runs it before
        the model's forward, which it reuses as the step's pass (:meth:`prepare_first_pass`),
        and :meth:`cancel_first_pass` undoes it if that forward fails."""
        if self._perturbed:
            return
        groups = []  # (group, params with a momentum, their v) of the groups with ρ > 0
        for group in self.param_groups:
            ps = [p for p in group["params"]
                  if self.base_optimizer.state[p].get(self.buffer_name) is not None]
            if ps and group["rho"]:
                groups.append((group, ps, [self.base_optimizer.state[p][self.buffer_name]
                                           for p in ps]))
        norm = self._norm([v for _, _, vs in groups for v in vs])  # ‖v_t‖ over the groups
        for group, ps, vs in groups:  # v_t = 0: moved by 0·v (exactly w), no host read of ‖v‖
            self._move(ps, vs, (-group["rho"] / (norm + 1e-12)).to(ps[0].device))

    prepare_first_pass = descend

    def cancel_first_pass(self) -> None:
        """Back at w_t after :meth:`descend` when no step follows."""
        self._restore()

    def _gradient(self, closure: Closure) -> torch.Tensor:
        self.stats.update(sampled=False, sampling_rate=0.0)  # ε from v: no SAM gradient
        self.descend()
        loss = self._pass(closure)  # g = ∇L(w_t + ε_t), the update gradient
        self._restore()
        return loss.mean()
