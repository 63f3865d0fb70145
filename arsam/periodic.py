"""PeriodicSAM: SAM every k steps, the base optimizer otherwise (SAM-5 / SAM-10 of vsam.txt Table 3)."""
from typing import Any

import torch

from ._types import BaseOptimizer, Closure, Params
from .engine import check_arg
from .sam import SAM


class PeriodicSAM(SAM):
    """SAM on steps 0, k, 2k, ...; a plain base-optimizer step on the others.

    Buffers: 1 weight-sized (as SAM).
    """

    def __init__(self, params: Params, base_optimizer: BaseOptimizer, rho: float = 0.05,
                 k: int = 5, **kwargs: Any) -> None:
        check_arg("k", k, isinstance(k, int) and not isinstance(k, bool) and k >= 1,
                  "an int >= 1")
        super().__init__(params, base_optimizer, rho, **kwargs)
        self.k = k

    def _gradient(self, closure: Closure) -> torch.Tensor:
        self.stats.update(sampled=self.iteration % self.k == 0, sampling_rate=1.0 / self.k)
        if self.stats["sampled"]:
            return super()._gradient(closure)
        return self._pass(closure).mean()
