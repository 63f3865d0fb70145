"""Sampling schedules of the PSF-reuse optimizers: when to pay for a SAM gradient.

A schedule answers ``decide(i, generator)`` before step i (1-based) and is told the outcome by
``update(i, sampled, psf_norm, sgd_norm)`` after the step succeeded, so a failed step changes
nothing. ``rate`` is the current sampling rate p. All state is in ``state_dict``.
"""
import collections
import math

import torch

from .engine import check_arg


def slice_variance(norms, slices):
    """Eq. 8: sort the PSF norms, cut them into M slices, average the within-slice variances."""
    ordered = torch.tensor(sorted(norms), dtype=torch.float64)
    parts = torch.tensor_split(ordered, slices)
    return sum(part.var(unbiased=False).item() for part in parts) / slices


def change_rate(new, old):
    """Eqs. 9 and 12: (x_i - x_{i-1}) / x_{i-1}; None where undefined (no or zero previous)."""
    return None if old is None or old == 0 else (new - old) / old


class VariationSchedule:
    """vSAM's adaptive sampling (vsam.txt, Eqs. 8-15 and Algorithm 1).

    Steps 1..start_iter are all sampled (plain SAM). Afterwards step i is sampled with
    probability p = s/N (Eq. 15), drawn from the optimizer's generator, until 0.8·N (``max_rate``)
    samples have been taken in the current window of N steps. At every sampled step the last N
    PSF norms give v (Eq. 8) and r = ‖PSF‖/‖g_SGD‖ (Eq. 11); their change rates (Eqs. 9, 12) are
    kept for the last N-1 sampled steps. Every N steps after start_iter the sample count is
    updated autoregressively, s <- s·(1 + α·ĉ_var + α·ĉ_norm) (Eqs. 10, 13, 14), and kept in
    [1, max_rate·N] so that sampling never stops for good.
    """

    def __init__(self, alpha=0.1, window=50, slices=5, max_rate=0.8, start_iter=100,
                 init_rate=0.5):
        check_arg("alpha", alpha, isinstance(alpha, (int, float)) and alpha >= 0, "a number >= 0")
        check_arg("window", window, isinstance(window, int) and window >= 2, "an int >= 2")
        check_arg("slices", slices, isinstance(slices, int) and 1 <= slices <= window,
                  f"an int in [1, window={window}]")
        check_arg("max_rate", max_rate, isinstance(max_rate, (int, float)) and 0 < max_rate <= 1,
                  "in (0, 1]")
        check_arg("start_iter", start_iter, isinstance(start_iter, int) and start_iter >= 0,
                  "an int >= 0")
        check_arg("init_rate", init_rate,
                  isinstance(init_rate, (int, float)) and 0 < init_rate <= max_rate,
                  f"in (0, max_rate={max_rate}]")
        self.alpha, self.window, self.slices = alpha, window, slices
        self.max_rate, self.start_iter = max_rate, start_iter
        self.s = init_rate * window          # samples wanted per window of N steps (Eq. 14)
        self.taken = 0                       # samples taken in the current window
        self.norms = collections.deque(maxlen=window)        # g^norm: last N ‖PSF‖
        self.c_var = collections.deque(maxlen=window - 1)    # Eq. 9 at the last sampled steps
        self.c_norm = collections.deque(maxlen=window - 1)   # Eq. 12
        self.v_prev = self.r_prev = None

    @property
    def rate(self):
        return self.s / self.window  # Eq. 15

    def warming_up(self, i):
        return i <= self.start_iter

    def decide(self, i, generator):
        if self.warming_up(i):
            return True
        if self.taken >= math.floor(self.max_rate * self.window):
            return False
        return torch.rand((), generator=generator, dtype=torch.float64).item() < self.rate

    def update(self, i, sampled, psf_norm=None, sgd_norm=None):
        if sampled:
            self.taken += 1
            self._observe(psf_norm, sgd_norm)
        if i % self.window == 0:
            if not self.warming_up(i):
                self._adapt()
            self.taken = 0

    def _observe(self, psf_norm, sgd_norm):
        self.norms.append(psf_norm)
        if len(self.norms) >= self.slices:
            v = slice_variance(self.norms, self.slices)
            self._record("var", change_rate(v, self.v_prev))
            self.v_prev = v
        if sgd_norm:
            r = psf_norm / sgd_norm
            self._record("norm", change_rate(r, self.r_prev))
            self.r_prev = r

    def _record(self, kind, c):
        if c is not None:
            getattr(self, "c_" + kind).append(c)

    def _adapt(self):
        c_var = sum(self.c_var) / len(self.c_var) if self.c_var else 0.0      # Eq. 10
        c_norm = sum(self.c_norm) / len(self.c_norm) if self.c_norm else 0.0  # Eq. 13
        self._set_s(self.s * (1 + self.alpha * c_var + self.alpha * c_norm))  # Eq. 14

    def _set_s(self, s):
        self.s = min(max(s, 1.0), self.max_rate * self.window)

    _fields = ("s", "taken", "v_prev", "r_prev")
    _deques = ("norms", "c_var", "c_norm")

    def state_dict(self):
        state = {k: getattr(self, k) for k in self._fields}
        state.update({k: list(getattr(self, k)) for k in self._deques})
        return state

    def load_state_dict(self, state):
        for k in self._fields:
            setattr(self, k, state[k])
        for k in self._deques:
            getattr(self, k).clear()
            getattr(self, k).extend(state[k])


class AutoregressiveSchedule(VariationSchedule):
    """ARSAM's schedule (arsam-abstract.txt): the same statistics and autoregressive rate law.

    The ARSAM paper is represented here by its abstract only; this is our reading of its
    "autoregressive schedule", differing from vSAM's in two ways:

    * the change rates of v and r are averaged by an autoregressive filter, an exponential
      moving average ĉ <- (1-λ)·ĉ + λ·c with λ = 2/N (the same centre of mass as vSAM's window
      of N-1 rates), updated at every sampled step, instead of a stored window of N-1 rates;
    * sampling is deterministic and evenly spaced: a credit grows by p every step and a step is
      sampled when it reaches 1 (then 1 is paid), so a window of N steps takes s samples exactly
      and the cost per step is predictable; p <= max_rate replaces vSAM's hard stop.

    No random numbers are drawn, so every DDP rank agrees without communication.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.credit = 0.0
        self.ema_var = self.ema_norm = 0.0

    def decide(self, i, generator):
        return self.warming_up(i) or self.credit + self.rate >= 1.0

    def update(self, i, sampled, psf_norm=None, sgd_norm=None):
        if not self.warming_up(i):
            self.credit += self.rate - (1.0 if sampled else 0.0)
        super().update(i, sampled, psf_norm, sgd_norm)

    def _record(self, kind, c):
        if c is not None:
            lam = 2.0 / self.window
            setattr(self, "ema_" + kind, (1 - lam) * getattr(self, "ema_" + kind) + lam * c)

    def _adapt(self):
        self._set_s(self.s * (1 + self.alpha * self.ema_var + self.alpha * self.ema_norm))  # Eq. 14

    _fields = VariationSchedule._fields + ("credit", "ema_var", "ema_norm")


SCHEDULES = {"variation": VariationSchedule, "autoregressive": AutoregressiveSchedule}
