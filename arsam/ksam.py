"""K-SAM (ksam.txt, Algorithm 1): SAM's two gradients on the top-k loss samples only."""
from typing import Any, Optional, Union

import torch

from ._types import BaseOptimizer, Closure, Params
from .engine import SharpnessAwareOptimizer, check_arg, check_fraction_or_count, subset_size


class KSAM(SharpnessAwareOptimizer):
    """K-SAM.

    Each step: a no-grad forward on the whole batch gives the losses l = L_B(w); the ascent
    gradient is taken on the K1 samples of highest loss, ε = ρ·∇L_{M_K1}(w)/‖∇L_{M_K1}(w)‖, and the
    update gradient on the K2 samples of highest loss at w+ε, ∇L_{M_K2}(w)|_{w+ε}.

    Args:
        k1, k2: subset sizes, an int or a fraction of the batch (paper: B/8 and B/2).
        k2_halve_at: K-SAM* (Sec. 4.1: "we further decrease K2 by half midway through
            training"): K2 is halved (rounded down, at least 1) from this point on; an int is a
            step, a float in [0, 1] a fraction of the run (``0.5``: the paper's midway), which
            needs ``total_steps`` (the mmengine wrappers fill it from the train loop; a step
            without it raises ValueError before any pass). None keeps K2 fixed (K-SAM).

    The closure must return per-sample losses. Buffers: 1 weight-sized (the copy of w).
    """

    #: sizes checked against the data's smallest batch before training (check_batch_size)
    subset_args = ("k1", "k2")
    needs_per_sample_losses = True
    #: the first pass (the losses that rank the samples) runs no backward: an integration that
    #: runs it itself (mmengine's train_step) runs it without building a graph
    first_pass_backward = False

    def __init__(self, params: Params, base_optimizer: BaseOptimizer, rho: float = 0.05,
                 k1: Union[int, float] = 0.125, k2: Union[int, float] = 0.5,
                 k2_halve_at: Optional[Union[int, float]] = None, **kwargs: Any) -> None:
        check_fraction_or_count("k1", k1)
        check_fraction_or_count("k2", k2)
        step = isinstance(k2_halve_at, int) and not isinstance(k2_halve_at, bool)
        check_arg("k2_halve_at", k2_halve_at, k2_halve_at is None or (step and k2_halve_at >= 0)
                  or (isinstance(k2_halve_at, float) and 0.0 <= k2_halve_at <= 1.0),
                  "None, an int >= 0 (a step) or a float in [0, 1] (a fraction of the run)")
        super().__init__(params, base_optimizer, rho, **kwargs)
        self.k1, self.k2, self.k2_halve_at = k1, k2, k2_halve_at

    def _gradient(self, closure: Closure) -> torch.Tensor:
        halved = self._k2_halved()  # before any pass: a fraction needs the run's length
        losses = self._pass(closure, backward=False, per_sample=True)  # l = L_B(w)
        n = len(losses)
        k1 = subset_size("k1", self.k1, n)
        k2 = subset_size("k2", self.k2, n)
        if halved:
            k2 = max(1, k2 // 2)
        top = losses.topk(max(k1, k2)).indices
        self._pass(closure, None if k1 == n else top[:k1], ascent=True)
        self._perturb()
        self._pass(closure, None if k2 == n else top[:k2])
        self._restore()
        return losses.mean()

    def _k2_halved(self) -> bool:
        """K-SAM*: whether this step (``iteration``, 0-based) uses K2/2."""
        at = self.k2_halve_at
        if at is None:
            return False
        if isinstance(at, int):
            return self.iteration >= at
        if self.total_steps is None:
            raise ValueError(f"k2_halve_at={at!r} is a fraction of the run, so KSAM needs "
                             "total_steps (the run's length in steps, an int >= 1), got None")
        return self.iteration / self.total_steps >= at  # exact for decimal fractions
