"""ARSAM's schedules: when to pay for a SAM gradient, and how much of the stored PSF to reuse.

The optimizer (reuse.py) runs the warm-up itself. After it, before every step, it asks
``decide(generator)``; after every sampled step (warm-up included) it hands the schedule the
fresh PSF's statistics with ``observe(sample)`` (the fresh PSF then replaces the stored one, or
is blended into it: ``average``, the weight of the fresh one, 1 as the paper); after every
post-warm-up step it calls ``advance(sampled)``. ``weight(k)`` is the coefficient of the stored
PSF k steps after the last sample (γ^k in Eq. 17). ``observe`` and ``advance`` run only once a
step succeeded, so a failed step changes nothing. ``rate`` is the current sampling rate; all
state is in ``state_dict``.

* ``'vsam'`` (:class:`VSAMSchedule`): the paper's Eqs. 8-17 as the official code runs them;
* ``'fixed'`` (:class:`FixedSchedule`): a constant rate, evenly spaced (the ablation);
* ``'matched'`` (:class:`MatchedSchedule`): our rule (docs/arsam.md).
"""
import collections
import math
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence

import torch

from .engine import check_arg, is_number


def _number(name: str, value: Any, ok: Callable[[float], bool], accepted: str) -> None:
    check_arg(name, value, is_number(value) and ok(value), accepted)


def _reuse_steps(value: Any) -> None:
    check_arg("reuse_steps", value, value is None or (
        isinstance(value, int) and not isinstance(value, bool) and value >= 0),
        "None or an int >= 0")


def slice_variance(norms: Sequence[float], slices: int) -> float:
    """Eq. 8: sort the PSF norms, cut them into M slices, average the variances of the slices
    (sample variances, as the official code's ``torch.var``; a one-value slice counts 0)."""
    ordered = torch.tensor(sorted(norms), dtype=torch.float64)
    parts = torch.tensor_split(ordered, slices)
    total = 0.0  # host values (CPU tensors of the stored norms): no device read
    for part in parts:
        total += part.var().item() if len(part) > 1 else 0.0
    return total / slices


def mean_change_rate(values: Sequence[float]) -> float:
    """Eqs. 9-10 and 12-13: the mean of (x_i - x_{i-1}) / x_{i-1} over consecutive values, the
    N-1 rates of N values; rates with a zero predecessor are undefined and left out."""
    rates = [(new - old) / old for old, new in zip(values, list(values)[1:]) if old != 0]
    return sum(rates) / len(rates) if rates else 0.0


def ema(mean: Optional[float], value: float, weight: float) -> float:
    """An exponential moving average's update: ``value`` first, then mean + weight·(value - mean)."""
    return value if mean is None else mean + weight * (value - mean)


class Sample(NamedTuple):
    """What the optimizer measures at a sampled step, on the schedule's tensors (reuse.py):
    ``psf_norm``, ``sgd_norm``: ‖PSF‖ and ‖g_SGD‖ of this step (Eq. 11); ``dot``, ``stored_sq``:
    <PSF, stored PSF> and ‖stored PSF‖² (0 when none is stored yet); ``gap``: steps since the
    previous sample (None for the first)."""

    psf_norm: float
    sgd_norm: float
    dot: float = 0.0
    stored_sq: float = 0.0
    gap: Optional[int] = None


class Schedule:
    """The interface (see the module docstring) and the state handling every schedule shares:
    ``_fields`` are plain attributes, ``_deques`` bounded deques."""

    _fields: Sequence[str] = ()
    _deques: Sequence[str] = ()
    #: the stored PSF becomes stored + average·(fresh - stored) at a sample (1: replaced)
    average: float = 1.0

    def decide(self, generator: torch.Generator) -> bool:
        raise NotImplementedError

    def observe(self, sample: Sample) -> None:
        pass

    def advance(self, sampled: bool) -> None:
        pass

    def weight(self, k: int) -> float:
        raise NotImplementedError

    @property
    def rate(self) -> float:
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        state = {k: getattr(self, k) for k in self._fields}
        state.update({k: list(getattr(self, k)) for k in self._deques})
        return state

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for k in self._fields:
            setattr(self, k, state[k])
        for k in self._deques:
            getattr(self, k).clear()
            getattr(self, k).extend(state[k])


class DecayedReuse:
    """Eq. 17's reuse weight γ^k, cut to 0 after ``reuse_steps`` steps (the official code reuses
    while γ^k > γ^6, i.e. for 6 steps; None reuses until the next sample, as the paper's text)."""

    def __init__(self, gamma: float, reuse_steps: Optional[int]) -> None:
        _number("gamma", gamma, lambda g: 0 <= g <= 1, "in [0, 1]")
        _reuse_steps(reuse_steps)
        self.gamma, self.reuse_steps = gamma, reuse_steps

    def weight(self, k: int) -> float:
        return self.gamma ** k if self.reuse_steps is None or k <= self.reuse_steps else 0.0


class VSAMSchedule(DecayedReuse, Schedule):
    """vSAM's variation schedule (vsam.txt Eqs. 8-17, Algorithm 1), official defaults.

    At every sampled step the last N PSF norms give v (Eq. 8) and r = ‖PSF‖/‖g_SGD‖ (Eq. 11);
    the last N values of each are kept. After every window of N post-warm-up steps the sample
    count moves autoregressively, s <- s·(1 + α·ĉ_var + α·ĉ_norm) (Eq. 14), ĉ the mean of the
    N-1 change rates of the kept values (Eqs. 9-10, 12-13), each ĉ clamped to [-clamp, clamp];
    s stays in [1, ⌊max_rate·N⌋]. Reuse: ``DecayedReuse``.

    Sampling within a window, where text and code differ:

    * ``quota=True`` (the official code, default): a window takes exactly ⌊s⌋ samples: a step is
      sampled with probability p = s/N (Eq. 15) while fewer than ⌊s⌋ are taken, and every step is
      sampled once the remaining steps are just enough to fill the quota;
    * ``quota=False`` (the paper's text): Bernoulli(p) every step, halted at ⌊max_rate·N⌋
      samples in the window.

    Args (official value first): alpha α = 0.1 (vsam.txt: 0.1 on CIFAR-10, 0.13 on CIFAR-100),
    gamma γ = 0.7, window N = 50, slices M = 5, max_rate = 0.8, init_samples s₁ = 1 (the
    official ``base_sr``), clamp = 1 (None: no clamp, the paper's text), quota = True,
    reuse_steps = 6.
    """

    _fields = ("s", "taken", "position")
    _deques = ("norms", "variances", "ratios")

    def __init__(self, alpha: float = 0.1, gamma: float = 0.7, window: int = 50, slices: int = 5,
                 max_rate: float = 0.8, init_samples: float = 1.0, clamp: Optional[float] = 1.0,
                 quota: bool = True, reuse_steps: Optional[int] = 6) -> None:
        _number("alpha", alpha, lambda a: a >= 0, "a number >= 0")
        check_arg("window", window, isinstance(window, int) and window >= 2, "an int >= 2")
        check_arg("slices", slices, isinstance(slices, int) and 1 <= slices <= window,
                  f"an int in [1, window={window}]")
        _number("max_rate", max_rate, lambda m: 0 < m <= 1 and m * window >= 1,
                f"in (0, 1] with max_rate·window >= 1 (window={window})")
        cap = math.floor(max_rate * window)
        _number("init_samples", init_samples, lambda s: 1 <= s <= cap,
                f"in [1, floor(max_rate·window)={cap}]")
        check_arg("clamp", clamp, clamp is None or (
            isinstance(clamp, (int, float)) and clamp > 0), "None or a number > 0")
        check_arg("quota", quota, isinstance(quota, bool), "a bool")
        super().__init__(gamma, reuse_steps)
        self.alpha, self.window, self.slices, self.max_rate = alpha, window, slices, max_rate
        self.clamp, self.quota, self.cap = clamp, quota, cap
        self.s = float(init_samples)  # s_i of Eq. 14: samples wanted per window of N steps
        self.taken = 0                 # samples taken in the current window
        self.position = 0              # steps done in the current window
        self.norms = collections.deque(maxlen=window)      # g^norm: the last N ‖PSF‖
        self.variances = collections.deque(maxlen=window)  # v (Eq. 8) at the last N samples
        self.ratios = collections.deque(maxlen=window)     # r (Eq. 11) at the last N samples

    @property
    def rate(self) -> float:
        return self.s / self.window  # Eq. 15

    def decide(self, generator: torch.Generator) -> bool:
        wanted = math.floor(self.s) if self.quota else self.cap
        if self.taken >= wanted:
            return False
        if self.quota and self.window - self.position <= wanted - self.taken:
            return True  # fill the quota
        return torch.rand((), generator=generator, dtype=torch.float64).item() < self.rate

    def observe(self, sample: Sample) -> None:
        self.norms.append(sample.psf_norm)
        if len(self.norms) >= self.slices:
            self.variances.append(slice_variance(self.norms, self.slices))  # Eq. 8
        if sample.sgd_norm:
            self.ratios.append(sample.psf_norm / sample.sgd_norm)           # Eq. 11

    def advance(self, sampled: bool) -> None:
        self.taken += sampled
        self.position += 1
        if self.position == self.window:
            c_var = self._clamped(mean_change_rate(self.variances))   # Eqs. 9-10
            c_norm = self._clamped(mean_change_rate(self.ratios))     # Eqs. 12-13
            s = self.s * (1 + self.alpha * c_var + self.alpha * c_norm)  # Eq. 14
            self.s = min(max(s, 1.0), float(self.cap))
            self.taken = self.position = 0

    def _clamped(self, c: float) -> float:
        return c if self.clamp is None else min(max(c, -self.clamp), self.clamp)


class EvenSpacing:
    """Deterministic, evenly spaced sampling at ``self.p``: a credit grows by p every step and a
    step is sampled when it reaches 1 (then 1 is paid); no random number is drawn."""

    def decide(self, generator: torch.Generator) -> bool:
        return self.credit + self.p >= 1.0

    def advance(self, sampled: bool) -> None:
        self.credit += self.p - sampled


class FixedSchedule(EvenSpacing, DecayedReuse, Schedule):
    """A constant sampling rate p, evenly spaced (``EvenSpacing``: n steps take ⌊n·p⌋ or ⌈n·p⌉
    samples). Reuse: ``DecayedReuse`` (default γ = 1, no cut-off: the PSF is reused whole until
    the next sample). The ablation that shows what an adaptive rate buys."""

    _fields = ("credit",)

    def __init__(self, rate: float = 0.2, gamma: float = 1.0,
                 reuse_steps: Optional[int] = None) -> None:
        _number("rate", rate, lambda r: 0 < r <= 1, "in (0, 1]")
        super().__init__(gamma, reuse_steps)
        self.p, self.credit = float(rate), 0.0

    @property
    def rate(self) -> float:
        return self.p


class MatchedSchedule(EvenSpacing, DecayedReuse, Schedule):
    """Our rule: sample just often enough that reusing a stale PSF costs no more noise than SGD's
    own (docs/arsam.md has the derivation and the measurements behind it).

    Model: PSF_t = m + n_t, a persistent part m and a part n_t of the batch (i.i.d., E‖n‖² = N).
    Measured on digits and Fashion-MNIST, <PSF_t, PSF_{t-d}>/‖PSF_{t-d}‖² is the same small
    number for every lag d from 1 to 50: m does not decay between samples, so the stored PSF is
    reused whole (γ = 1, no cut-off; Eq. 17's γ^k shrinks m and loses SAM's gain). Reusing the
    PSF of step t* for the T-1 steps of a gap of T errs by e_t = n_t* - n_t each step; the errors
    add up *coherently*, E‖Σ e_t‖² = (T-1)·T·D/2 with D = E‖PSF_t - PSF_t*‖² = 2N, while SGD's own
    gradient noise adds up *incoherently*, (T-1)·σ². Holding the first within κ² times the
    second gives the gap T = 2κ²σ²/D, the rate

        p = D / (2·κ²·σ²),  clipped to [min_rate, max_rate],

    with D = ‖PSF‖² + ‖stored‖² - 2<PSF, stored> (how far the reused PSF was from the fresh
    one) and σ² ≈ ‖g_SGD‖² (an upper bound of SGD's noise) measured at every sample and
    averaged by exponential moving averages of weight ``smooth``. Sampling is evenly spaced
    (``EvenSpacing``); until the first sample is observed every step is sampled.

    The stored PSF S is an exponential moving average of the sampled PSFs, S <- S + a·(PSF - S)
    (a = 1: replaced, as Eq. 17): m is kept, the batch part n_t* that every reuse step repeats
    is shrunk to E‖·‖² = a/(2-a)·N. Too much of it costs accuracy; too little of S loses SAM's
    gain where m is a small part of the PSF (small ρ; docs/arsam.md). So a is ``average``, raised
    where needed to keep S's expected norm at least ``reuse_ratio``·‖g_SGD‖ (c): at every sample

        ‖m‖² + a/(2-a)·N = c²σ²,  a = 2q/(1+q), q = (c²σ² - M)/(P - M),  clipped to [average, 1],

    with P and M exponential moving averages (weight ``smooth``) of ‖PSF‖² = ‖m‖² + N and of
    <PSF, S> (≈ ‖m‖²: the fresh batch part is independent of S), measured from the second
    sample on; until then, and with ``reuse_ratio=None``, a = ``average``.

    Args: kappa κ = 1.5, min_rate = 0.05 (a PSF is at most 20 steps old), max_rate = 0.5,
    smooth = 0.2, average = 0.1, reuse_ratio = 0.1 (min_rate, average and reuse_ratio set on
    Fashion-MNIST, docs/arsam.md; before: 0.02, 1 and None); gamma, reuse_steps as
    ``DecayedReuse`` (1 and None).
    """

    _fields = ("credit", "p", "d_mean", "sgd_sq_mean", "average", "dot_mean", "psf_sq_mean")

    def __init__(self, kappa: float = 1.5, min_rate: float = 0.05, max_rate: float = 0.5,
                 smooth: float = 0.2, average: float = 0.1, reuse_ratio: Optional[float] = 0.1,
                 gamma: float = 1.0, reuse_steps: Optional[int] = None) -> None:
        _number("kappa", kappa, lambda k: k > 0, "a number > 0")
        _number("max_rate", max_rate, lambda m: 0 < m <= 1, "in (0, 1]")
        _number("min_rate", min_rate, lambda m: 0 < m <= max_rate, f"in (0, max_rate={max_rate}]")
        _number("smooth", smooth, lambda s: 0 < s <= 1, "in (0, 1]")
        _number("average", average, lambda a: 0 < a <= 1, "in (0, 1]")
        check_arg("reuse_ratio", reuse_ratio, reuse_ratio is None or (
            is_number(reuse_ratio) and reuse_ratio > 0), "None or a number > 0")
        super().__init__(gamma, reuse_steps)
        self.kappa, self.min_rate, self.max_rate, self.smooth = kappa, min_rate, max_rate, smooth
        self.min_average, self.reuse_ratio = float(average), reuse_ratio
        self.credit, self.p, self.average = 0.0, float(max_rate), float(average)
        self.d_mean = self.sgd_sq_mean = None     # EMAs of D and σ²
        self.dot_mean = self.psf_sq_mean = None   # EMAs of <PSF, S> and ‖PSF‖² (M and P)

    @property
    def rate(self) -> float:
        return self.p

    def decide(self, generator: torch.Generator) -> bool:
        return self.d_mean is None or super().decide(generator)

    def observe(self, sample: Sample) -> None:
        d = sample.psf_norm ** 2 + sample.stored_sq - 2.0 * sample.dot
        if not sample.stored_sq:
            d = 2.0 * sample.psf_norm ** 2  # nothing stored yet: as if uncorrelated
        self.d_mean = ema(self.d_mean, d, self.smooth)
        self.sgd_sq_mean = ema(self.sgd_sq_mean, sample.sgd_norm ** 2, self.smooth)
        p = self.d_mean / (2.0 * self.kappa ** 2 * self.sgd_sq_mean) if self.sgd_sq_mean else 1.0
        self.p = min(max(p, self.min_rate), self.max_rate)
        if self.reuse_ratio is not None and sample.stored_sq:
            self._set_average(sample)

    def _set_average(self, sample: Sample) -> None:
        """a from c: ‖m‖² + a/(2-a)·N = c²σ² (see the class docstring)."""
        self.dot_mean = ema(self.dot_mean, sample.dot, self.smooth)
        self.psf_sq_mean = ema(self.psf_sq_mean, sample.psf_norm ** 2, self.smooth)
        m = max(self.dot_mean, 0.0)
        target, noise = self.reuse_ratio ** 2 * self.sgd_sq_mean - m, self.psf_sq_mean - m
        if noise > 0:
            q = max(target / noise, 0.0)
            a = 2.0 * q / (1.0 + q)
        else:  # no batch part: follow the fresh PSF
            a = 1.0
        self.average = min(max(a, self.min_average), 1.0)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """A state saved before the weight adapted (no ``average``) starts it from ``average``."""
        super().load_state_dict(dict(
            dict(average=self.min_average, dot_mean=None, psf_sq_mean=None), **state))


SCHEDULES = {"vsam": VSAMSchedule, "fixed": FixedSchedule, "matched": MatchedSchedule}
