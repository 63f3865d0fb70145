"""ESAM (esam.txt, Algorithm 1): Stochastic Weight Perturbation + Sharpness-sensitive Data Selection."""
import contextlib
import math
from typing import Any, Iterator

import torch

from ._types import BaseOptimizer, Params
from .engine import SharpnessAwareOptimizer, check_arg

#: ESAM's ascent radius: the official code's ρ/β, or ρ/√β from Eq. 6 read literally
RADII = ("official", "eq6")


class ESAM(SharpnessAwareOptimizer):
    """Efficient SAM.

    SWP (Eq. 6): each parameter *tensor* is chosen with probability β; only chosen tensors get an
    ascent gradient (the others have ``requires_grad`` off during that pass, which is what saves
    backward compute: autograd skips their weight-gradient kernels; a per-element mask would
    give the same expectation but save nothing, and the paper's appendix A.4 selects whole
    parameter units; under FSDP, whose sharded gradients ignore the flags, the flags stay on
    and the tensors not chosen drop their ascent gradient: the same ε, no saving).
    ε = m⊙ε̂/β with ε̂ = ρ·g/‖g‖, where ‖g‖ is known only through the chosen
    tensors (``radius``):

    * ``'official'`` (default: what the authors ran, dydjw9/Efficient_SAM, and the ρ/β of
      Algorithm 1, line 7): ‖g‖ is taken as ‖m⊙g‖, so ε = ρ·m⊙g/(β·‖m⊙g‖) and ‖ε‖ = ρ/β;
    * ``'eq6'`` (Eq. 6 read literally): ‖g‖ is estimated as ‖m⊙g‖/√β (unbiased for ‖g‖²), so
      ε = ρ·m⊙g/(√β·‖m⊙g‖), ‖ε‖ = ρ/√β and E[ε] ≈ ε̂ as Eq. 6 intends.

    At β = 0.5 the radii are 2ρ and 1.41ρ; at β = 1 both are SAM's ρ.

    SDS (Eq. 7): a no-grad forward at w+ε gives each sample's loss increase
    ℓ(w+ε) - ℓ(w); the update gradient is taken at w+ε on the γ fraction of the batch whose
    loss increases most (B+), exactly k = round(γ·B) samples (the official code's strict
    ``>`` cutoff keeps k - 1; not copied).

    With β = 1 and γ = 1 this is SAM. Per-sample losses are needed when γ < 1.
    Buffers: 1 weight-sized (the copy of w).
    """

    def __init__(self, params: Params, base_optimizer: BaseOptimizer, rho: float = 0.05,
                 beta: float = 0.6, gamma: float = 0.5, radius: str = "official",
                 **kwargs: Any) -> None:
        check_arg("beta", beta, isinstance(beta, (int, float)) and 0 < beta <= 1, "in (0, 1]")
        check_arg("gamma", gamma, isinstance(gamma, (int, float)) and 0 <= gamma <= 1,
                  "in [0, 1]")
        check_arg("radius", radius, radius in RADII, f"one of {RADII}")
        super().__init__(params, base_optimizer, rho, **kwargs)
        if beta < 1 and self._flat_parameters():
            raise ValueError(f"beta={beta} (SWP) chooses among the model's parameter tensors, "
                             "but these are FSDP1 flat parameters (several tensors each): wrap "
                             "the model with use_orig_params=True")
        self.beta, self.gamma, self.radius = beta, gamma, radius
        self._swp_mask = None  # (generator state before the draw, tensors turned off)

    @property
    def needs_per_sample_losses(self) -> bool:  # type: ignore[override]
        return self.gamma < 1

    def accumulate(self, closure):
        loss = super().accumulate(closure)
        self._swp_mask = None  # drawn and used: a later micro-batch's draw replays it
        return loss

    def _undo(self, generator_state):
        """A failed or skipped step: a mask drawn before it goes too, its draw rewound."""
        super()._undo(generator_state)
        self.cancel_swp_mask()

    def _gradient(self, closure):
        select = self.gamma < 1
        with self._swp():
            loss_w = self._pass(closure, per_sample=select, ascent=True)
        norm = self._grad_norm()  # ‖m⊙g‖: the tensors not chosen have no gradient
        if self.radius == "eq6":
            norm = norm / math.sqrt(self.beta)
        self._perturb(norm=norm, scale=1.0 / self.beta)  # Eq. 6: ε = m⊙ε̂/β
        indices = None
        if select:
            n = len(loss_w)
            k = max(1, int(round(self.gamma * n)))
            if k < n:
                loss_eps = self._pass(closure, backward=False, per_sample=True)
                indices = (loss_eps - loss_w).topk(k).indices  # B+: largest loss increase
        self._pass(closure, indices)
        self._restore()
        return loss_w.mean()

    def draw_swp_mask(self) -> None:
        """Draw the coming step's SWP selection (Eq. 6) now and turn ``requires_grad`` off for the
        tensors not chosen (Bernoulli(β) each, at least one chosen).

        The step's first pass is the forward at w; an integration that runs that forward itself
        (mmengine's train_step, reused as the ascent pass) calls this before it, so that the
        forward builds no graph for the unchosen tensors, as in the official code. The next
        :meth:`compute_gradient` uses this selection and turns the flags back on after its
        ascent pass; :meth:`cancel_swp_mask` undoes it. Called again, it first cancels the
        pending selection (so it draws the same one); the micro-batches of one step
        (:meth:`accumulate`) draw the same one too.
        """
        self.cancel_swp_mask()
        self.replay_draws()  # every micro-batch of a step draws the same selection
        state = self.generator.get_state()
        params = [p for p in self._params() if p.requires_grad]
        off = []
        if self.beta < 1 and params:
            draw = torch.rand(len(params), generator=self.generator, dtype=torch.float64)
            chosen = draw < self.beta
            if not chosen.any():
                chosen[torch.randint(len(params), (1,), generator=self.generator)] = True
            off = [p for p, c in zip(params, chosen.tolist()) if not c]
        if self.shard_group is None:  # FSDP computes sharded gradients whatever the flags say
            for p in off:
                p.requires_grad_(False)
        self._swp_mask = (state, off)

    def cancel_swp_mask(self) -> None:
        """Undo a pending :meth:`draw_swp_mask`: flags back on, the generator rewound."""
        if self._swp_mask is not None:
            state = self._swp_mask[0]
            self._flags_back_on()
            self._swp_mask = None
            self.generator.set_state(state)

    prepare_first_pass = draw_swp_mask
    cancel_first_pass = cancel_swp_mask

    def _flags_back_on(self) -> None:
        state, off = self._swp_mask
        for p in off:
            p.requires_grad_(True)
            p.grad = None  # sharded (FSDP): the ascent gradient of a tensor not chosen
        self._swp_mask = (state, [])  # the draw stays undoable until the step has succeeded

    @contextlib.contextmanager
    def _swp(self) -> Iterator[None]:
        """The ascent pass under the SWP selection: the pending one or one drawn now."""
        if self._swp_mask is None:
            self.draw_swp_mask()
        yield  # on an exception _undo cancels the selection
        self._flags_back_on()
