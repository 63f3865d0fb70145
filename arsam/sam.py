"""SAM (Foret et al., 2021) and ASAM (Kwon et al., 2021), in the form of davda54/sam."""
import torch

from ._types import Closure
from .engine import SharpnessAwareOptimizer


class SAM(SharpnessAwareOptimizer):
    """Sharpness-Aware Minimization.

    Each step: g = ∇L(w); ε = ρ·g/‖g‖ (Eq. 2 of vsam.txt; ASAM with ``adaptive=True``:
    ε = ρ·|w|²g/‖|w|g‖); the update uses ∇L(w+ε) (Eq. 4). Two forward/backward passes.

    Buffers: 1 weight-sized (the copy of w while perturbed).
    """

    def _gradient(self, closure: Closure) -> torch.Tensor:
        loss = self._pass(closure, ascent=True)  # g at w, only for ε
        self._perturb()
        self._pass(closure)                      # ∇L(w + ε): the update gradient
        self._restore()
        return loss.mean()
