"""ARSAM (vSAM): SAM's gradient decomposed into g_SGD + PSF, the PSF sampled and reused.

vsam.txt, Algorithm 1; arsam-abstract.txt is the same authors' extended version of the method
(its "autoregressive schedule" is Eq. 14), so ``ARSAM`` and ``VSAM`` are one optimizer.
Every step computes g_SGD = ∇L(w). On a sampled step the SAM gradient g_SAM = ∇L(w+ε),
ε = ρ·g_SGD/‖g_SGD‖, is computed too, the update uses it (Eq. 16) and PSF = g_SAM - g_SGD
(Eqs. 5-6) is stored (or, under a schedule whose ``average`` is below 1, blended into the stored
one: our 'matched'). Any other step i updates with g_SGD + c·PSF (Eq. 17: c = γ^(i-i*), i* the
last sampled step). When to sample, the weight c and the blend are the schedule's
(schedules.py).
"""
import inspect
import warnings
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from ._types import BaseOptimizer, Closure, Params
from .engine import (SharpnessAwareOptimizer, add_grads, caller_stacklevel, check_arg,
                     is_number)
from .schedules import SCHEDULES, Sample, Schedule


#: the official warm-up (train_vsam.py: ``epoch < 3``) and the most of a run the default takes
OFFICIAL_WARMUP_EPOCHS, WARMUP_SHARE = 3, 0.1


class ARSAM(SharpnessAwareOptimizer):
    """Sampling-reusing-mixing of the decomposed SAM gradient (see the module docstring).

    Args:
        schedule: ``'matched'`` (default: our rule, which kept more of SAM's gain with fewer
            SAM gradients than the paper's in our benchmarks; docs/arsam.md), ``'vsam'``
            (Eqs. 8-17 as the authors' code runs them), ``'fixed'`` or a schedule object. The named
            schedules take their arguments as keyword arguments here (``alpha``, ``gamma``,
            ``kappa``, ...: see :mod:`arsam.schedules`); the other keyword arguments go to the
            base optimizer.
        warmup_epochs: plain SAM for the first epochs; needs ``steps_per_epoch`` (the mmengine
            wrappers take it from the train loop). None (default): the official 3 epochs (the
            code's ``epoch < 3``), cut to ``WARMUP_SHARE`` (10 %) of ``total_steps`` when the run
            is shorter (warned once), and no warm-up when ``steps_per_epoch`` is unknown (plain
            PyTorch without it: the first step is sampled, as always, and the schedule starts
            after it). A number given explicitly is used as it is: it must resolve and leave
            part of the run to the schedule (else ValueError before any work).
        start_iter: the warm-up in steps instead (vsam.txt's I_start); overrides warmup_epochs.
        norm_params: the tensors on which the schedule's norms (‖PSF‖, ‖g_SGD‖, Sec. 3.2: "the
            last few layers") are measured: an int k, the last k perturbed parameter tensors in
            the model's order (``model=`` given) or else the param groups' order (official
            ``--last_layer 10``); or parameter-name prefixes such as ``('decode_head.conv_seg',)``
            (needs ``model=``); None: every perturbed tensor.

    Buffers: 2 weight-sized (the stored PSF and the copy of w while perturbed); on a sampled step
    g_SGD is kept alive until the PSF is formed in its memory (the official code keeps 4).
    """

    persistent = ("psf",)

    def __init__(self, params: Params, base_optimizer: BaseOptimizer, rho: float = 0.05,
                 schedule: Union[str, Schedule] = "matched", *,
                 warmup_epochs: Optional[float] = None,
                 start_iter: Optional[int] = None,
                 norm_params: Optional[Union[int, Sequence[str]]] = 10, **kwargs: Any) -> None:
        self.schedule = build_schedule(schedule, kwargs)
        check_arg("warmup_epochs", warmup_epochs, warmup_epochs is None or (
            is_number(warmup_epochs) and warmup_epochs >= 0), "None or a number >= 0")
        check_arg("start_iter", start_iter, start_iter is None or (
            isinstance(start_iter, int) and not isinstance(start_iter, bool) and start_iter >= 0),
            "None or an int >= 0")
        check_arg("norm_params", norm_params, norm_params is None or (
            isinstance(norm_params, int) and not isinstance(norm_params, bool) and norm_params >= 1)
            or (isinstance(norm_params, (tuple, list)) and norm_params and all(
                isinstance(n, str) for n in norm_params)),
            "None, an int >= 1 or a list of parameter-name prefixes")
        super().__init__(params, base_optimizer, rho, **kwargs)
        self.warmup_epochs, self.start_iter, self.norm_params = warmup_epochs, start_iter, norm_params
        self._warned_warmup = False
        self.last_sampled = None  # i*
        self.psf_norm = None      # ‖PSF_{i*}‖ on the measured tensors
        self._warmup = self._sampled = False  # this step's decisions (_begin_step)
        self._replays = []        # (closure, batch size) of a sampled step's micro-batches

    # ----------------------------------------------------------------------------- Algorithm 1
    def _begin_step(self) -> None:
        """Whether this step is sampled: decided once, before its first micro-batch."""
        if isinstance(self.norm_params, (tuple, list)) and self.model is None:
            raise ValueError("norm_params given as parameter-name prefixes needs the model "
                             "(model=; the mmengine wrappers set it)")
        self._warmup = self.iteration + 1 <= self.warmup_steps()
        # the first step is sampled whatever the schedule says: Eq. 17 needs a stored PSF
        self._sampled = (self._warmup or self.last_sampled is None
                         or self.schedule.decide(self.generator))
        self._replays = []

    def _gradient(self, closure: Closure) -> torch.Tensor:
        """A micro-batch's g_SGD = ∇L(w), in .grad; its SAM pass waits for the step's ε."""
        loss = self._pass(closure)
        if self._sampled:
            self._replays.append((closure, self._batch_size))
        return loss.mean()

    def _complete_step(self, n: int) -> None:
        """Eq. 16 or 17 on the step's mean g_SGD (in .grad): on a sampled step ε is taken from
        it and each micro-batch's closure runs again at w + ε (as DDP's ranks, whose g_SGD is
        all-reduced before their ascent), else the stored PSF is added."""
        i = self.iteration + 1
        sampled, warmup = self._sampled, self._warmup
        self.stats["sgd_norm"] = None  # measured on sampled steps (_store_psf)
        params = [p for g in self.param_groups for p in self._with_grad(g)]
        scale = 1.0 if self.loss_scaler is None else self.loss_scaler.get_scale()
        if sampled:
            g_sgd = [p.grad for p in params]
            self._perturb()
            total = None
            for closure, batch_size in self._replays:
                self._batch_size = batch_size
                self._pass(closure)                      # g_SAM = ∇L(w + ε): Eq. 16's update
                grads = [p.grad for p in params]
                total = grads if total is None else add_grads(total, grads)
            self._restore()
            for p, g in zip(params, self._mean(total, n)):
                p.grad = g
            sampled = self._store_psf(i, params, g_sgd, scale)
        elif self.last_sampled is not None:             # Eq. 17: g_SGD + c·PSF_{i*}
            c = self.schedule.weight(i - self.last_sampled)
            pairs = [(p.grad, self.state[p]["psf"]) for p in params if "psf" in self.state[p]]
            if c and pairs:
                grads, psf = map(list, zip(*pairs))
                torch._foreach_add_(grads, psf, alpha=c * scale)
        if not warmup:
            self.schedule.advance(sampled)
        self.stats.update(sampled=sampled, psf_norm=self.psf_norm,
                          sampling_rate=1.0 if warmup else self.schedule.rate,
                          psf_average=self.schedule.average)
        self._replays = []

    def _discard_step(self) -> None:
        self._replays = []

    def _store_psf(self, i: int, params: List[torch.Tensor], g_sgd: List[torch.Tensor],
                   scale: float) -> bool:
        """PSF = g_SAM - g_SGD, formed in g_SGD's memory, unscaled; the schedule observes it, then
        it is stored (blended into the stored one by the schedule's ``average``). Returns False
        for a non-finite PSF (an overflowed loss-scaled step, which the scaler skips: nothing is
        stored)."""
        measured = self._measured(params)
        sgd_norm = self._norm([g_sgd[k] for k in measured])  # before g_sgd becomes the PSF
        psf = g_sgd
        torch._foreach_sub_(psf, [p.grad for p in params])  # g_SGD - g_SAM
        torch._foreach_mul_(psf, -1.0 / scale)
        if self.loss_scaler is not None and not torch.isfinite(self._norm(psf)):
            return False
        new = [psf[k] for k in measured]
        stored = [self.state[params[k]]["psf"] for k in measured if "psf" in self.state[params[k]]]
        # a PSF stored for every measured tensor (sharded: a rank's stored and new shards are
        # of the same tensors, but a rank holding none of them has both empty)
        paired = self.last_sampled is not None and len(stored) == len(new)
        # the schedule decides on the host: the step's one read of device values (one sync)
        zero = torch.zeros((), dtype=torch.float64, device=sgd_norm.device)
        values = [sgd_norm, self._norm(new), *((self._dot(new, stored), self._norm(stored))
                                               if paired else (zero, zero))]
        sgd_norm, self.psf_norm, dot, stored_norm = torch.stack(
            [v.double().to(zero.device) for v in values]).tolist()
        sgd_norm /= scale
        sample = Sample(self.psf_norm, sgd_norm, dot=dot, stored_sq=stored_norm ** 2,
                        gap=None if self.last_sampled is None else i - self.last_sampled)
        self.schedule.observe(sample)
        mix = self.schedule.average  # stored + mix·(fresh - stored); 1: the fresh one replaces it
        blend = [(self.state[p]["psf"], d) for p, d in zip(params, psf) if "psf" in self.state[p]]
        if mix != 1 and blend:
            torch._foreach_lerp_(*map(list, zip(*blend)), mix)
        for p, d in zip(params, psf):
            if mix == 1 or "psf" not in self.state[p]:
                self.state[p]["psf"] = d
        self.last_sampled = i
        self.stats["sgd_norm"] = sgd_norm
        return True

    # ----------------------------------------------------------------------------- settings
    def warmup_steps(self) -> int:
        """Steps of plain SAM before the schedule starts (vsam.txt's I_start; see warmup_epochs)."""
        if self.start_iter is not None:
            return self.start_iter
        if self.warmup_epochs is None:  # the official 3 epochs, at most WARMUP_SHARE of the run
            if self.steps_per_epoch is None:
                return 0
            steps = int(round(OFFICIAL_WARMUP_EPOCHS * self.steps_per_epoch))
            if self.total_steps is not None and steps > WARMUP_SHARE * self.total_steps:
                cut = int(WARMUP_SHARE * self.total_steps)
                if not self._warned_warmup:
                    self._warned_warmup = True
                    warnings.warn(
                        f"ARSAM: the default warm-up of {OFFICIAL_WARMUP_EPOCHS} epochs ({steps} "
                        f"steps of {self.steps_per_epoch}) is more than {WARMUP_SHARE:.0%} of "
                        f"the run (total_steps={self.total_steps}): cut to {cut} steps; set "
                        "warmup_epochs or start_iter to choose", stacklevel=caller_stacklevel())
                steps = cut
            return steps
        if not self.warmup_epochs:
            return 0
        if self.steps_per_epoch is None:
            raise ValueError(
                f"warmup_epochs={self.warmup_epochs} needs steps_per_epoch (an argument of the "
                "optimizer; the mmengine wrappers take it from the train loop), or give the "
                "warm-up in steps with start_iter")
        steps = int(round(self.warmup_epochs * self.steps_per_epoch))
        if self.total_steps is not None and steps >= self.total_steps:
            raise ValueError(
                f"warmup_epochs={self.warmup_epochs} ({steps} steps of {self.steps_per_epoch}) "
                f"covers the whole run of total_steps={self.total_steps}: ARSAM would be plain "
                "SAM; give a shorter warm-up, or leave warmup_epochs unset (the official "
                f"{OFFICIAL_WARMUP_EPOCHS} epochs, cut to {WARMUP_SHARE:.0%} of a shorter run)")
        return steps

    def _measured(self, params: List[torch.Tensor]) -> List[int]:
        """Indices into ``params`` (the tensors with a gradient) of the schedule's tensors."""
        perturbed = {p for g in self.param_groups if g["rho"] for p in g["params"]}
        if isinstance(self.norm_params, (tuple, list)):
            named = {p for n, p in self.model.named_parameters()
                     if any(n.startswith(prefix) for prefix in self.norm_params)}
            chosen = [p for p in params if p in named]
            if not chosen:
                raise ValueError(f"norm_params {list(self.norm_params)} names no parameter with "
                                 "a gradient")
        else:
            order = (list(self.model.parameters()) if self.model is not None
                     else [p for p in params])
            # sharded (FSDP1): a rank sees the gradients of its shard only, so the tensors
            # that require one count, the same on every rank
            has_grad = ((lambda p: p.requires_grad) if self.shard_group is not None
                        else (lambda p: p.grad is not None))
            chosen = [p for p in order if p in perturbed and has_grad(p)]
            if self.norm_params is not None:
                chosen = chosen[-self.norm_params:]
        index = {p: k for k, p in enumerate(params)}
        return [index[p] for p in chosen if p in index]

    # ----------------------------------------------------------------------------- state
    def _extra_state(self) -> Dict[str, Any]:
        return dict(schedule=self.schedule.state_dict(), last_sampled=self.last_sampled,
                    psf_norm=self.psf_norm)

    def _load_extra_state(self, state: Dict[str, Any]) -> None:
        self.schedule.load_state_dict(state["schedule"])
        self.last_sampled, self.psf_norm = state["last_sampled"], state["psf_norm"]


#: vSAM (vsam.txt) and ARSAM (arsam-abstract.txt) are one algorithm
VSAM = ARSAM


def build_schedule(schedule: Union[str, Schedule], kwargs: Dict[str, Any]) -> Schedule:
    """The schedule named ``schedule`` built with its arguments taken out of ``kwargs``, or
    ``schedule`` itself when it is a schedule object."""
    if isinstance(schedule, Schedule):
        own = {name for cls in SCHEDULES.values()
               for name in inspect.signature(cls).parameters} & set(kwargs)
        if own:
            raise TypeError(f"schedule arguments {sorted(own)} given with a schedule object; "
                            "set them when building it")
        return schedule
    check_arg("schedule", schedule, schedule in SCHEDULES,
              f"one of {sorted(SCHEDULES)} or a schedule object")
    cls = SCHEDULES[schedule]
    mine = list(inspect.signature(cls).parameters)
    others = {name: other for other, c in SCHEDULES.items() if other != schedule
              for name in inspect.signature(c).parameters if name not in mine and name in kwargs}
    if others:
        name, other = sorted(others.items())[0]
        raise TypeError(f"{name} is an argument of schedule {other!r}, not of {schedule!r} "
                        f"(its arguments: {', '.join(mine)})")
    return cls(**{k: kwargs.pop(k) for k in mine if k in kwargs})
