"""vSAM and ARSAM: SAM's gradient decomposed into g_SGD + PSF, the PSF sampled and reused.

vsam.txt, Algorithm 1. Every step computes g_SGD = ∇L(w). On a sampled step the SAM gradient
g_SAM = ∇L(w+ε), ε = ρ·g_SGD/‖g_SGD‖, is computed too, the update uses it (Eq. 16) and
PSF = g_SAM - g_SGD is stored. Any other step i updates with g_SGD + γ^(i-i*)·PSF_{i*} (Eq. 17),
i* the last sampled step. When to sample is the schedule's business: VSAM and ARSAM are this one
optimizer with two schedules (schedules.py).
"""
import torch

from .engine import SharpnessAwareOptimizer, check_arg, tensors_norm
from .schedules import AutoregressiveSchedule, VariationSchedule


class PSFReuseSAM(SharpnessAwareOptimizer):
    """Sampling-reusing-mixing of the decomposed SAM gradient (see module docstring).

    Args:
        gamma: decay γ of the reused PSF (Eq. 17); 0 gives vSAM-A (plain g_SGD off samples).
        alpha, window (N), slices (M), max_rate, start_iter, init_rate: the schedule's (Eqs.
            8-15); steps 1..start_iter are plain SAM.
        norm_params: ‖PSF‖ and ‖g_SGD‖ for the schedule are measured on this many trailing
            parameter tensors (the last layers, Sec. 3.2); None measures all.

    Buffers: 2 weight-sized (the stored PSF and the copy of w while perturbed); on a sampled step
    g_SGD is kept alive until the PSF is formed from it in place (the official code keeps 4).
    """

    schedule_class = None
    persistent = ("psf",)

    def __init__(self, params, base_optimizer, rho=0.05, alpha=0.1, gamma=0.7, window=50,
                 slices=5, max_rate=0.8, start_iter=100, init_rate=0.5, norm_params=4, **kwargs):
        check_arg("gamma", gamma, isinstance(gamma, (int, float)) and 0 <= gamma <= 1, "in [0, 1]")
        check_arg("norm_params", norm_params, norm_params is None or (
            isinstance(norm_params, int) and norm_params >= 1), "None or an int >= 1")
        self.schedule = self.schedule_class(alpha=alpha, window=window, slices=slices,
                                            max_rate=max_rate, start_iter=start_iter,
                                            init_rate=init_rate)
        super().__init__(params, base_optimizer, rho, **kwargs)
        self.gamma, self.norm_params = gamma, norm_params
        self.last_sampled = None  # i*
        self.psf_norm = None      # ‖PSF_{i*}‖ on the measured tensors

    def _gradient(self, closure):
        i = self.iteration + 1
        sampled = self.schedule.decide(i, self.generator)
        loss = self._pass(closure)                       # g_SGD = ∇L(w), in .grad
        params = [p for g in self.param_groups for p in self._with_grad(g)]
        scale = 1.0 if self.loss_scaler is None else self.loss_scaler.get_scale()
        norms = None
        if sampled:
            g_sgd = [p.grad for p in params]
            self._perturb()
            self._pass(closure)                          # g_SAM = ∇L(w + ε): Eq. 16's update
            self._restore()
            norms = self._store_psf(i, params, g_sgd, scale)
            sampled = norms is not None
        elif self.last_sampled is not None:             # Eq. 17: g_SGD + γ^(i-i*)·PSF_{i*}
            pairs = [(p.grad, self.state[p]["psf"]) for p in params if "psf" in self.state[p]]
            if pairs:
                grads, psf = map(list, zip(*pairs))
                torch._foreach_add_(grads, psf, alpha=self.gamma ** (i - self.last_sampled) * scale)
        self.schedule.update(i, sampled, *(norms or (None, None)))
        self.stats.update(sampled=sampled, psf_norm=self.psf_norm,
                          sgd_norm=norms[1] if sampled else None,
                          sampling_rate=1.0 if self.schedule.warming_up(i) else self.schedule.rate)
        return loss.mean()

    def _store_psf(self, i, params, g_sgd, scale):
        """PSF = g_SAM - g_SGD, formed in g_SGD's memory and stored unscaled; returns the
        (‖PSF‖, ‖g_SGD‖) measured on the trailing tensors, or None for a non-finite PSF (an
        overflowed loss-scaled step, which the scaler skips: the old PSF is kept)."""
        measured = slice(None) if self.norm_params is None else slice(-self.norm_params, None)
        sgd_norm = tensors_norm(g_sgd[measured]).item() / scale
        psf = g_sgd
        torch._foreach_sub_(psf, [p.grad for p in params])  # g_SGD - g_SAM
        torch._foreach_mul_(psf, -1.0 / scale)
        if self.loss_scaler is not None and not torch.isfinite(tensors_norm(psf)):
            return None
        for p, d in zip(params, psf):
            self.state[p]["psf"] = d
        self.last_sampled, self.psf_norm = i, tensors_norm(psf[measured]).item()
        return self.psf_norm, sgd_norm

    def _extra_state(self):
        return dict(schedule=self.schedule.state_dict(), last_sampled=self.last_sampled,
                    psf_norm=self.psf_norm)

    def _load_extra_state(self, state):
        self.schedule.load_state_dict(state["schedule"])
        self.last_sampled, self.psf_norm = state["last_sampled"], state["psf_norm"]


class VSAM(PSFReuseSAM):
    """vSAM (vsam.txt): PSF reuse driven by the variation schedule (Eqs. 8-15)."""

    schedule_class = VariationSchedule


class ARSAM(PSFReuseSAM):
    """ARSAM (arsam-abstract.txt): PSF reuse driven by the autoregressive schedule."""

    schedule_class = AutoregressiveSchedule
