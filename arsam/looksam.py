"""LookSAM (Liu et al., CVPR 2022, "Towards Efficient and Scalable Sharpness-Aware Minimization")."""
from typing import Any

import torch

from ._types import BaseOptimizer, Closure, Params
from .engine import SharpnessAwareOptimizer, check_arg, is_number


class LookSAM(SharpnessAwareOptimizer):
    """SAM every k-th step; in between, the last SAM gradient's component orthogonal to g_SGD.

    On steps 0, k, 2k, ...: g = ∇L(w), g_s = ∇L(w + ρ·g/‖g‖) updates (as SAM), and
    g_v = g_s - (<g_s, g>/‖g‖²)·g, the part of g_s orthogonal to g, is stored. On the other steps
    the update is g + α·(‖g‖/‖g_v‖)·g_v (Liu et al., Algorithm 1), one forward/backward.
    vsam.txt Table 3 compares LookSAM-5 (k = 5).

    The reused correction has norm α·‖g‖ whatever ρ: ρ only sets its direction, α its size.
    SAM's own correction is r·‖g‖ with r = ‖g_v‖/‖g‖ (``stats['gv_ratio']`` on SAM steps, a
    0-dim tensor: no host sync), which shrinks with ρ. Where α exceeds r, LookSAM regularizes more than SAM itself: on
    Fashion-MNIST (SGD, momentum 0.9, ρ = 0.2: r ≈ 0.3-0.5) α = 0.7 ends below SGD, also with
    g_v recomputed on every step, while α = 0.2 (MarlonBecker/MSAM's LookSAM) keeps SAM's gain
    (docs/fidelity.md). The default is the paper's 0.7 (its authors released no code); pick α at
    or below r.

    Args:
        k: SAM every k steps (>= 1); alpha: α, the weight of the reused g_v (the paper: 0.7).

    Buffers: 2 weight-sized (g_v and the copy of w while perturbed).
    """

    persistent = ("g_v",)
    #: its step projects the whole batch's g_SAM on the whole batch's g (no micro-batches)
    accumulates = False

    def __init__(self, params: Params, base_optimizer: BaseOptimizer, rho: float = 0.05,
                 k: int = 5, alpha: float = 0.7, **kwargs: Any) -> None:
        check_arg("k", k, isinstance(k, int) and not isinstance(k, bool) and k >= 1, "an int >= 1")
        check_arg("alpha", alpha, is_number(alpha) and alpha >= 0, "a number >= 0")
        super().__init__(params, base_optimizer, rho, **kwargs)
        self.k, self.alpha = k, alpha

    def _gradient(self, closure: Closure) -> torch.Tensor:
        sampled = self.iteration % self.k == 0
        self.stats.update(sampled=sampled, sampling_rate=1.0 / self.k, gv_ratio=None)
        loss = self._pass(closure)                       # g = ∇L(w)
        params = [p for group in self.param_groups for p in self._with_grad(group)]
        g = [p.grad for p in params]
        if sampled:
            self._perturb()
            self._pass(closure)                          # g_s = ∇L(w + ε), the update
            self._restore()
            g_s = [p.grad for p in params]
            g_norm = self._norm(g).double()
            coef = (self._dot(g_s, g) / g_norm ** 2).nan_to_num(0.0)
            # g_s - <g_s,g>/‖g‖²·g, the coefficient kept on the device
            g_v = torch._foreach_addcmul(g_s, g, [-coef] * len(g))
            scale = 1.0 if self.loss_scaler is None else self.loss_scaler.get_scale()
            if self.loss_scaler is not None:  # stored unscaled; an overflow keeps the old g_v
                torch._foreach_mul_(g_v, 1.0 / scale)
            g_v_norm = self._norm(g_v)  # one norm: the statistic and the overflow check
            self.stats["gv_ratio"] = (g_v_norm * scale / g_norm).nan_to_num(0.0)  # 0-dim tensor
            if self.loss_scaler is None or torch.isfinite(g_v_norm):
                for p, v in zip(params, g_v):
                    self.state[p]["g_v"] = v
            return loss.mean()
        stored = [self.state[p]["g_v"] for p in params if "g_v" in self.state[p]]
        if stored and len(stored) == len(params):
            g_v_norm = self._norm(stored)  # g_v = 0 (g_s parallel to g): g as it is
            scale = torch.where(g_v_norm > 0, self.alpha * self._norm(g) / g_v_norm, 0.0)
            torch._foreach_addcmul_(g, stored, [scale] * len(g))  # g + α·‖g‖/‖g_v‖·g_v
        return loss.mean()
