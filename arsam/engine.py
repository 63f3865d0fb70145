"""The engine every sharpness-aware optimizer here is built on.

It owns what the algorithms share: wrapping a base optimizer, running closure passes (BatchNorm
statistics updated by the first pass of a step only, DDP's ``no_sync`` on ascent-only passes, loss
scaling, the closure protocol's checks), the ascent perturbation and its exact undo, gradient
norms, skipping non-finite steps, statistics and state.
An algorithm subclasses :class:`SharpnessAwareOptimizer` and writes ``_gradient(closure)`` the way
its paper writes the step.

The closure protocol: ``closure(indices=None)`` runs a forward pass only, on the whole batch or on
the samples at ``indices`` (a LongTensor), and returns per-sample losses of shape ``[n]`` (a scalar
is accepted by the optimizers that never select samples). The optimizer reduces by the mean and
runs every backward itself. A closure that breaks the protocol (runs a backward itself, returns
losses without a graph or the wrong number of them) raises an error naming the problem, with the
step undone.

No value is read on the host in a step (no host-device synchronization) unless the algorithm
needs it for a decision: ``skip_nonfinite``'s check, ARSAM's schedule on its sampled steps, a
loss scaler's scale (docs/benchmarks.md, "Host-device synchronization").

Gradient accumulation: ``accumulate(closure)`` per micro-batch, then ``step()``
(:meth:`SharpnessAwareOptimizer.accumulate`).
"""
import contextlib
import math
import os
import sys
from typing import Any, Dict, Iterator, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn

from ._types import BaseOptimizer, Closure, Params

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # torch built without torch.distributed
    DTensor = ()


def check_arg(name, value, ok, accepted):
    """Raise ValueError naming ``name`` and the ``accepted`` range unless ``ok``."""
    if not ok:
        raise ValueError(f"{name} must be {accepted}, got {value!r}")


def is_number(value):
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: frames a warning should not name: arsam's own and torch's optimizer wrappers
_INTERNAL = tuple(os.path.dirname(os.path.abspath(f)) + os.sep
                  for f in (__file__, torch.optim.__file__))


def caller_stacklevel() -> int:
    """``warnings.warn``'s stacklevel, from the function calling this, that names the first frame
    outside arsam and torch.optim: the user's call of ``step()`` (or an integration's)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    return level


def check_fraction_or_count(name, value):
    """K-style sizes: an int >= 1 (samples) or a float in (0, 1] (fraction of the batch)."""
    is_count = isinstance(value, int) and not isinstance(value, bool)
    check_arg(name, value, (is_count and value >= 1) or
              (isinstance(value, float) and 0.0 < value <= 1.0),
              "an int >= 1 (samples) or a float in (0, 1] (fraction of the batch)")


def subset_size(name, value, batch):
    """Resolve an int or fraction K against the batch size; K larger than the batch is an error."""
    k = value if isinstance(value, int) else max(1, int(round(value * batch)))
    check_arg(name, value, k <= batch, f"at most the batch size ({batch})")
    return k


def _total_norm(norms, device=None):
    if not norms:
        return torch.zeros((), device=device)
    return torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms]))


def add_grads(total, grads):
    """``total`` + ``grads`` (lists aligned on the parameters; None: no gradient), in place."""
    pairs = [(t, g) for t, g in zip(total, grads) if t is not None and g is not None]
    if pairs:
        torch._foreach_add_(*map(list, zip(*pairs)))
    return [g if t is None else t for t, g in zip(total, grads)]


# ----------------------------------------------------------------------------- sharded layouts
def _is_dtensor(t):
    return isinstance(t, DTensor)


def _local(t):
    """The shard a rank holds: a DTensor's local tensor (the same memory, so in-place ops update
    the DTensor; foreach ops such as ``_foreach_copy_`` have no DTensor rule), a tensor itself."""
    return t.to_local() if _is_dtensor(t) else t


def _dtensor_group(t):
    """The process group over which a DTensor (``fully_shard``'s parameters) is sharded: its
    mesh dimension with a Shard placement (the others replicate it, HSDP); None if replicated."""
    dims = [d for d, p in enumerate(t.placements) if not p.is_replicate()]
    if not dims:
        return None
    if len(dims) > 1 or not t.placements[dims[0]].is_shard():
        raise NotImplementedError(f"parameters placed as {t.placements}: arsam reduces norms over "
                                  "one mesh dimension of shards (fully_shard, HSDP) only")
    return t.device_mesh.get_group(dims[0])


def _sharded(tensors, group):
    """The shards' group: ``group``, else that of DTensor ``tensors``; None for whole tensors."""
    if group is None and tensors and _is_dtensor(tensors[0]):
        group = _dtensor_group(tensors[0])
    return group


def _sum_over(value, group):
    """``value`` (a rank's partial sum) summed over the ranks of ``group``: one all-reduce (a
    non-finite part makes the sum non-finite on every rank)."""
    if group is None:
        return value
    dist.all_reduce(value, op=dist.ReduceOp.SUM, group=group)
    return value


def tensors_norm(tensors: Sequence[torch.Tensor], group: Any = None, *,
                 device: Any = None) -> torch.Tensor:
    """‖(t_1, ..., t_n)‖_2 of a list of tensors, as a 0-dim tensor. Of the whole tensors when
    they are shards over the ranks of ``group`` (FSDP1's) or DTensors (``fully_shard``): the
    ranks' squared norms summed in float64, one all-reduce; every rank must call it, a rank
    holding no shard of them with an empty list (its zero on ``device``)."""
    group = _sharded(tensors, group)
    local = [_local(t) for t in tensors]
    norm = _total_norm(torch._foreach_norm(local) if tensors else [], device)
    return norm if group is None else _sum_over(norm.double().square(), group).sqrt()


def tensors_dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor], group: Any = None, *,
                device: Any = None) -> torch.Tensor:
    """<(a_1, ..., a_n), (b_1, ..., b_n)> of two lists of tensors, as a 0-dim float64 tensor; of
    the whole tensors when sharded (as :func:`tensors_norm`: one all-reduce)."""
    group = _sharded(a, group)
    dot = torch.zeros((), dtype=torch.float64, device=device) if not a else torch.stack(
        [torch.vdot(_local(x).flatten(), _local(y).flatten()) for x, y in zip(a, b)]
    ).double().sum()
    return _sum_over(dot, group)


def updates_running_stats(module: nn.Module) -> bool:
    """A BatchNorm layer whose forward would update its running statistics now."""
    return (isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training
            and module.track_running_stats)


@contextlib.contextmanager
def frozen_bn_stats(model: Optional[nn.Module]) -> Iterator[None]:
    """Stop BatchNorm layers in training mode from updating their running statistics.

    With ``track_running_stats`` off a training-mode BatchNorm still normalizes with the batch
    statistics but neither touches ``running_mean``/``running_var`` nor ``num_batches_tracked``,
    so extra passes leave the statistics exactly as the step's first pass set them.
    """
    layers = [] if model is None else [m for m in model.modules() if updates_running_stats(m)]
    for m in layers:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in layers:
            m.track_running_stats = True


class _NonFiniteStep(Exception):
    """Raised inside a step with ``skip_nonfinite``: the step is undone and skipped."""


#: the entry of ``state_dict()['state']`` that holds the optimizer's own state (torch's
#: per-parameter entries have int keys; FSDP's optimizer state dict copies other entries)
OWN_STATE = "arsam"
#: prefix of the optimizer's own buffers among a parameter's entries of ``state_dict()['state']``
OWN_PREFIX = "arsam."


def _current_layout(state_dict: Any) -> Dict[str, Any]:
    """``state_dict`` in the layout of :meth:`SharpnessAwareOptimizer.state_dict`; one of the
    layout before it (``{'base_optimizer': <the base's state_dict>, 'arsam': {..., 'buffers':
    {i: {name: tensor}}}}``) converted. ValueError for anything else."""
    if isinstance(state_dict, dict) and set(state_dict) == {"base_optimizer", "arsam"}:
        base, own = state_dict["base_optimizer"], dict(state_dict["arsam"])
        state = {i: dict(s) for i, s in base["state"].items()}
        for i, buffers in own.pop("buffers").items():
            state.setdefault(int(i), {}).update({OWN_PREFIX + k: v for k, v in buffers.items()})
        return {"state": {**state, OWN_STATE: own}, "param_groups": base["param_groups"]}
    if not (isinstance(state_dict, dict) and set(state_dict) == {"state", "param_groups"}):
        got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
        raise ValueError("state_dict must come from an arsam optimizer's state_dict() (keys "
                         f"'state' and 'param_groups'), got {got}")
    if OWN_STATE not in state_dict["state"]:
        raise ValueError("state_dict must come from an arsam optimizer's state_dict(): its "
                         f"'state' has no entry {OWN_STATE!r} (the optimizer's own state; a "
                         "base optimizer's state_dict?)")
    return state_dict


#: param-group keys of the SAM family, which a base optimizer must not use for its own settings
GROUP_KEYS = {"rho": "the ascent radius", "adaptive": "the ASAM switch", "eta": "ASAM's η"}


class SharpnessAwareOptimizer(torch.optim.Optimizer):
    """Base of SAM and its efficient variants.

    Args:
        params: the model (``arsam.SAM(model, ...)``: its parameters), parameters or param
            groups (None when ``base_optimizer`` is an instance).
        base_optimizer: an optimizer class (built here with ``params`` and ``**kwargs``) or an
            already built optimizer instance; it performs every update. It must not use the
            param-group keys ``rho``, ``adaptive`` and ``eta`` for settings of its own
            (Adadelta's ``rho``), since the SAM family keeps its per-group settings under those
            names.
        rho: neighbourhood radius ρ of the ascent step (per param group: a group's ``rho``).
        adaptive: ASAM (Kwon et al., 2021): the ascent is normalized by T = |w| + η element-wise
            on weights and T = 1 on biases, ε = ρ·T²g/‖Tg‖, as in the authors' code
            (SamsungLabs/ASAM). Biases are the parameters whose name (in ``model``) contains
            "bias"; without a model every tensor counts as a weight. ρ is then on another scale
            than SAM's: the authors use ρ = 0.5 on CIFAR-10 and 1.0 on CIFAR-100 (SAM: 0.05, 0.1).
        eta: η of ASAM's T = |w| + η (authors: 0.01; 0 gives davda54/sam's T = |w| on weights),
            a number >= 0 (per param group: a group's ``eta``).
        model: the module trained, for integrations and ASAM's bias names (set by passing the
            model as ``params``). BatchNorm needs no model: the training-mode BatchNorm layers
            that run in a step's passes update their running statistics in its first pass only.
        seed: seed of the optimizer's own random generator (the global RNG is never used); the
            same on every DDP rank so that all ranks take the same random decisions.
        skip_nonfinite: a step whose losses or gradients are not finite is skipped (weights,
            gradients and state as before it; ``stats['skipped']``, ``skipped_steps`` count it),
            as GradScaler skips an overflowed step; the check reads a flag on the host once per
            pass. False: nothing is checked (non-finite losses propagate into the weights, as
            with torch's optimizers) and no value is read on the host.
            With a ``loss_scaler`` the scaler skips overflowed steps itself. Under
            torch.distributed every rank skips when any rank would (one all-reduce per check).
        total_steps, steps_per_epoch: the run's length, for arguments given as a fraction of the
            run or in epochs (None: unknown; the mmengine wrappers fill them from the train loop
            before the first step).
        shard_group: the process group over whose ranks the parameters are sharded (FSDP):
            norms, dot products and the skip check are then reduced over it, so that every rank
            takes the step of the whole model. None: the group of DTensor parameters
            (``fully_shard``), else of the FSDP1 modules in ``model`` (FSDP1's shards are plain
            tensors: give ``model=`` or ``shard_group=``; mmengine's wrappers give the model),
            else none: whole tensors (one process; DDP, whose replicas take each their own
            ascent, as in the SAM paper).

    Attributes set by integrations: ``loss_scaler`` (a ``torch.amp.GradScaler``),
    ``ascent_context`` (a context-manager factory entered around passes whose gradient is used
    only for the perturbation, e.g. DDP's ``model.no_sync``) and ``replica_mean`` (see
    :meth:`accumulate`).

    Buffers: ``backup``, a copy of w while the weights are perturbed (one weight-sized buffer).
    """

    #: per-parameter state entries carried by ``state_dict``
    persistent = ()
    #: whether the closure must return per-sample losses (integrations check it before training)
    needs_per_sample_losses = False
    #: arguments that size a subset of the batch (int or fraction; :meth:`check_batch_size`)
    subset_args = ()

    def __init__(self, params: Params, base_optimizer: BaseOptimizer, rho: float = 0.05, *,
                 adaptive: bool = False, eta: float = 0.01, model: Optional[nn.Module] = None,
                 seed: int = 0, skip_nonfinite: bool = False, total_steps: Optional[int] = None,
                 steps_per_epoch: Optional[int] = None, shard_group: Any = None,
                 **kwargs: Any) -> None:
        if isinstance(params, nn.Module):
            check_arg("model", model, model is None or model is params,
                      "None or the module given as params")
            model, params = params, params.parameters()
        check_arg("rho", rho, is_number(rho) and rho >= 0, "a number >= 0")
        check_arg("eta", eta, is_number(eta) and eta >= 0, "a number >= 0")
        for name, value in (("adaptive", adaptive), ("skip_nonfinite", skip_nonfinite)):
            check_arg(name, value, isinstance(value, bool), "a bool")
        check_arg("model", model, model is None or isinstance(model, nn.Module),
                  "None or a torch.nn.Module")
        check_arg("seed", seed, isinstance(seed, int) and not isinstance(seed, bool), "an int")
        for name, value in (("total_steps", total_steps), ("steps_per_epoch", steps_per_epoch)):
            check_arg(name, value, value is None or (
                isinstance(value, int) and not isinstance(value, bool) and value >= 1),
                "None or an int >= 1")
        if isinstance(base_optimizer, torch.optim.Optimizer):
            check_arg("params", params, params is None,
                      "None when base_optimizer is an optimizer instance (its groups are used)")
            if kwargs:
                raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(kwargs)}"
                                " (arguments of the built base optimizer are set when building "
                                "it)")
            base = base_optimizer
        elif callable(base_optimizer):
            base = base_optimizer(params, **kwargs)
        else:
            raise TypeError("base_optimizer must be a torch.optim.Optimizer class or instance, "
                            f"got {type(base_optimizer).__name__}")
        for key, meaning in GROUP_KEYS.items():
            if key in base.defaults:
                raise ValueError(
                    f"base_optimizer {type(base).__name__} has a setting of its own named "
                    f"{key!r} (default {base.defaults[key]!r}), the param-group key that holds "
                    f"{meaning} of {type(self).__name__}: each would read the other's value; "
                    "use another base optimizer")
        super().__init__(base.param_groups, dict(rho=rho, adaptive=adaptive, eta=eta))
        for i, group in enumerate(base.param_groups):
            for key in ("rho", "eta"):
                check_arg(f"param_groups[{i}][{key!r}]", group[key],
                          is_number(group[key]) and group[key] >= 0, "a number >= 0")
            check_arg(f"param_groups[{i}]['adaptive']", group["adaptive"],
                      isinstance(group["adaptive"], bool), "a bool")
        self.base_optimizer = base
        self.param_groups = base.param_groups
        self.defaults.update(base.defaults)
        self.model = model
        self.shard_group = self._find_shard_group(shard_group, model)
        if any(g["adaptive"] for g in self.param_groups) and self._flat_parameters():
            raise ValueError("adaptive=True (ASAM: T = 1 on the biases, found by name) needs the "
                             "model's own parameter tensors, but these are FSDP1 flat parameters"
                             ": wrap the model with use_orig_params=True")
        self.skip_nonfinite = skip_nonfinite
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.loss_scaler = None
        self.ascent_context = contextlib.nullcontext
        self.generator = torch.Generator().manual_seed(seed)
        self.iteration = 0  # completed steps
        self.skipped_steps = 0
        self.stats = {}
        self._perturbed = []
        self._passes = 0
        self._batch_size = None  # per-sample losses in the step's full-batch passes
        #: set by integrations that run accumulated micro-batches without DDP's synchronization
        #: (the mmengine wrappers): averages gradients over the replicas in place
        self.replica_mean = None
        self._micro = 0          # micro-batches accumulated for the coming step
        self._sum = None         # their update gradients' sum, kept out of .grad
        self._losses = []        # their losses at w
        self._skip = False       # a micro-batch was not finite: the step is skipped
        self._draws = None       # (micro-batch that last replayed, generator at step start)
        self._after_draws = None  # the generator after the first micro-batch's draws

    # ----------------------------------------------------------------------------- the step
    def step(self, closure: Optional[Closure] = None) -> torch.Tensor:
        """One optimization step; returns the (detached) loss at w (NaN for a skipped step).

        ``step(closure)`` takes it on one batch; ``step()`` on the micro-batches given to
        :meth:`accumulate` since the last step (gradient accumulation).
        """
        loss = self.compute_gradient(closure)
        if self.stats.get("skipped"):
            return loss
        if self.loss_scaler is None:
            self.base_optimizer.step()
        else:
            self.loss_scaler.step(self.base_optimizer)
            self.loss_scaler.update()
        return loss

    def compute_gradient(self, closure: Optional[Closure] = None) -> torch.Tensor:
        """Leave the update gradient in ``.grad`` with the weights back at w; return the loss at w.

        With ``closure``: of that batch (accumulated micro-batches, if any, count as well).
        Without: of the micro-batches given to :meth:`accumulate`, the mean of their update
        gradients. If anything raises, the weights are restored, the step's gradients (the
        accumulated ones too) cleared, the generator rewound and no state changed; the exception
        propagates. A step skipped by ``skip_nonfinite`` ends the same way, with no gradient
        (``.grad`` None: the base optimizer's step leaves the weights alone), ``stats['skipped']``
        True and a NaN loss.
        """
        if closure is None and not self._micro:
            raise TypeError("closure must be callable, got NoneType (without a closure the step "
                            "is taken on the micro-batches given to accumulate(), and none was)")
        try:
            if closure is not None:
                self.accumulate(closure)
            return self._finish()
        except BaseException:
            self._discard()
            raise

    def accumulate(self, closure: Closure) -> torch.Tensor:
        """Gradient accumulation: one micro-batch of the coming step; returns its loss at w.

        Each micro-batch gets the algorithm's own computation on its own batch, as each DDP
        replica does (its own ascent: the SAM paper's m-sharpness), and the next ``step()``
        updates with the mean of their update gradients, once: n micro-batches equal one n times
        larger batch split over n DDP ranks (``sync_ascent=False``)::

            for x, y in zip(inputs.chunk(n), targets.chunk(n)):
                opt.accumulate(make_closure(x, y))  # closure(indices=None) on that micro-batch
            opt.step()

        A closure must hold its own micro-batch (ARSAM calls it again at ``step()``: no lambda
        over the loop's variables). The step's decisions and random draws are its first
        micro-batch's, shared by the others (as every DDP rank draws the same): ESAM's SWP
        selection, ARSAM's sampling; ARSAM's SAM gradients are taken at ``step()``, at the ascent
        of the mean g_SGD, as under DDP. Between calls ``.grad`` is None (the sum is kept aside:
        ``zero_grad`` cannot lose it; during a micro-batch it is one weight-sized buffer more).
        A micro-batch that raises adds nothing and leaves the weights at w, the earlier ones
        kept. With ``skip_nonfinite`` a non-finite micro-batch skips the whole step (the step's
        other micro-batches run no pass), as under DDP.

        Under DDP the synchronized passes of each micro-batch are all-reduced by DDP (n
        all-reduces a step). To all-reduce once, run the micro-batches and ``step()`` in
        ``model.no_sync()`` and set ``replica_mean`` to a function that averages a list of
        gradients over the ranks in place: the step applies it to the summed update gradient
        (ARSAM also to its summed g_SGD before the ascent), as the mmengine wrappers do
        (tests/core_accum_worker.py does both). Not with sharded parameters (FSDP).
        """
        if not callable(closure):
            raise TypeError(f"closure must be callable, got {type(closure).__name__}")
        if self._micro and not self.accumulates:
            raise NotImplementedError(
                f"{type(self).__name__} does not accumulate gradients over micro-batches (its "
                "step needs the whole batch's gradient at w); use one batch per step")
        if self._micro and self.shard_group is not None:
            raise NotImplementedError("gradient accumulation with sharded parameters (FSDP) is "
                                      "not supported; use one batch per step")
        if self._skip:
            self.cancel_first_pass()  # what an integration prepared for this micro-batch
            self._micro += 1
            return torch.tensor(math.nan)
        generator_state = self.generator.get_state()
        first = not self._micro
        if first:
            self.stats = dict(sampled=True, sampling_rate=1.0, psf_norm=None,
                              forward_samples=0, backward_samples=0)
            if self.skip_nonfinite:
                self.stats["skipped"] = False
        stats = dict(self.stats)
        self._passes, self._batch_size = 0, None
        try:
            self.replay_draws()
            if first:
                self._begin_step()
            with torch.enable_grad(), self._batchnorm_stats_once():
                loss = self._gradient(closure)
        except _NonFiniteStep:
            self._undo(generator_state)
            self._skip = True
            self._micro += 1
            self._sum = None
            return torch.tensor(math.nan)
        except BaseException:
            self._undo(generator_state)
            self._draws = None if first else (None, self._draws[1])
            self.stats = stats
            raise
        if first:
            self._after_draws = self.generator.get_state()
        grads = [p.grad for p in self._params()]
        self.zero_grad(set_to_none=True)
        self._sum = grads if self._sum is None else add_grads(self._sum, grads)
        self._losses.append(loss.detach())
        self._micro += 1
        return loss.detach()

    def replay_draws(self) -> None:
        """Make this micro-batch draw what the step's first one drew: it starts from the
        generator state the first one started from (called before its first draw)."""
        micro, start = self._draws or (None, None)
        if micro == self._micro:
            return
        if not self._micro:
            start = self.generator.get_state()
        else:
            self.generator.set_state(start)
        self._draws = (self._micro, start)

    def _finish(self):
        """The step on the accumulated micro-batches: their mean update gradient in ``.grad``
        (averaged over the replicas by ``replica_mean``), then :meth:`_complete_step`."""
        n = self._micro
        if self._skip:
            self._discard()
            self.skipped_steps += 1
            self.stats.update(skipped=True, sampled=False, sampling_rate=None, psf_norm=None)
            return torch.tensor(math.nan)
        self.generator.set_state(self._after_draws)
        grads = self._mean(self._sum, n)
        for p, g in zip(self._params(), grads):
            p.grad = g
        self._sum = None
        self._passes = 1  # the step's passes here are no micro-batch's first: BatchNorm frozen
        try:
            with torch.enable_grad(), self._batchnorm_stats_once():
                self._complete_step(n)
        except _NonFiniteStep:
            self._micro, self._skip = n, True
            return self._finish()
        loss = torch.stack(self._losses).mean()
        self._micro, self._losses, self._draws = 0, [], None
        self.iteration += 1
        return loss

    def _mean(self, grads, n):
        """The replicas' (``replica_mean``) and ``n`` micro-batches' mean of summed ``grads``."""
        present = [g for g in grads if g is not None]
        if self.replica_mean is not None:
            self.replica_mean(present)
        if n > 1:
            torch._foreach_div_(present, n)
        return grads

    def _discard(self):
        """Drop the accumulated micro-batches: weights at w, no gradient, generator at the step's
        start, the step's pending decisions undone."""
        self._restore()
        self.zero_grad(set_to_none=True)
        if self._draws is not None and self._draws[1] is not None:
            self.generator.set_state(self._draws[1])
        self._micro, self._sum, self._losses, self._skip, self._draws = 0, None, [], False, None
        self._discard_step()

    #: whether the algorithm takes a step over several micro-batches (:meth:`accumulate`)
    accumulates = True

    def _begin_step(self) -> None:
        """What the algorithm decides once per step, before the first micro-batch: nothing."""

    def _complete_step(self, n: int) -> None:
        """The step's work after its ``n`` micro-batches, on their mean in ``.grad``: nothing."""

    def _discard_step(self) -> None:
        """Forget what :meth:`_begin_step` and the micro-batches set up: nothing here."""

    def find_shards(self, model: nn.Module) -> None:
        """Learn the shard group from ``model``, the module as trained (FSDP1's
        FullyShardedDataParallel), unless one is known: for integrations that build the
        optimizer before they see the wrapped model (mmengine's wrappers, in ``optim_context``).
        """
        if self.shard_group is None:
            self.shard_group = self._find_shard_group(None, model)

    def _find_shard_group(self, shard_group, model):
        """The group over which the parameters are sharded: ``shard_group``, that of the FSDP1
        modules in ``model`` or of DTensor parameters (``fully_shard``); None: whole tensors
        (one process, DDP replicas). FSDP1's flat parameters without a model are an error
        (their norms would be each rank's shard's)."""
        if shard_group is not None or not (dist.is_available() and dist.is_initialized()):
            return shard_group
        from torch.distributed.fsdp import FullyShardedDataParallel
        params = self._params()
        dtensors = [p for p in params if _is_dtensor(p)]
        if dtensors and len(dtensors) < len(params):
            raise ValueError("some parameters are DTensors (fully_shard) and some are not: arsam "
                             "needs them all sharded alike (norms are reduced over one group)")
        groups = [_dtensor_group(p) for p in dtensors] or [
            m.process_group for m in (model.modules() if model is not None else ())
            if isinstance(m, FullyShardedDataParallel)]
        if not groups and self._flat_parameters():
            raise ValueError("the parameters are FSDP1 flat parameters: give model= (the "
                             "FullyShardedDataParallel module) or shard_group= (its "
                             "process_group), or norms would be each rank's shard's")
        if any(g is not groups[0] for g in groups):
            raise ValueError("the parameters are sharded over different process groups: arsam "
                             "reduces norms over one (give shard_group=)")
        return groups[0] if groups else None

    def _flat_parameters(self):
        """Whether the parameters are FSDP1's flat parameters (``use_orig_params=False``), each
        holding several tensors of the model."""
        if not (dist.is_available() and dist.is_initialized()):
            return False
        from torch.distributed.fsdp._flat_param import FlatParameter
        return any(isinstance(p, FlatParameter) for p in self._params())

    def _norm(self, tensors):
        """:func:`tensors_norm` of the whole tensors, for the parameters' layout."""
        return tensors_norm(tensors, self.shard_group, device=self._device())

    def _dot(self, a, b):
        """:func:`tensors_dot` of the whole tensors, for the parameters' layout."""
        return tensors_dot(a, b, self.shard_group, device=self._device())

    def _device(self):
        """Where the parameters live (a sharded rank's empty norm is reduced there)."""
        params = self._params()
        return params[0].device if params else None

    def _undo(self, generator_state):
        """A failed or skipped step: weights back at w, its gradients cleared, generator rewound."""
        self._restore()
        self.zero_grad(set_to_none=True)
        self.generator.set_state(generator_state)

    def _gradient(self, closure):
        raise NotImplementedError

    def prepare_first_pass(self) -> None:
        """What the algorithm sets up before the step's first pass, for an integration that runs
        that forward itself (mmengine's train_step, reused as the first pass): nothing here;
        ESAM draws its SWP selection, MSAM moves the weights to w + ε."""

    def cancel_first_pass(self) -> None:
        """Undo :meth:`prepare_first_pass` when that forward fails and no step follows."""

    def check_batch_size(self, n: int) -> None:
        """ValueError naming the argument if a batch of ``n`` samples cannot hold one of the
        subsets the algorithm selects (:attr:`subset_args`, e.g. K-SAM's ``k1=16`` with ``n=8``).
        Integrations call it before training with the data's smallest batch."""
        for name in self.subset_args:
            subset_size(name, getattr(self, name), n)

    @contextlib.contextmanager
    def _batchnorm_stats_once(self):
        """Only the step's first pass updates BatchNorm running statistics.

        For the step's duration a global module forward pre-hook turns ``track_running_stats``
        off in every training-mode BatchNorm layer that runs in a later pass (it then normalizes
        by the batch statistics and leaves the running ones alone, see :func:`frozen_bn_stats`);
        the step's end turns them back on. Whatever module the closure calls is covered.
        """
        frozen = []

        def freeze(module, args):
            if self._passes > 1 and updates_running_stats(module):
                module.track_running_stats = False
                frozen.append(module)

        handle = nn.modules.module.register_module_forward_pre_hook(freeze)
        try:
            yield
        finally:
            handle.remove()
            for module in frozen:
                module.track_running_stats = True

    # ----------------------------------------------------------------------------- passes
    def _pass(self, closure, indices=None, *, backward=True, per_sample=False, ascent=False):
        """Run the closure once (on ``indices`` if given); backward of the mean unless told not.

        ``ascent`` marks a pass whose gradient serves the perturbation alone (entered in
        ``ascent_context``). The closure's result is checked against the protocol first.
        Returns the detached losses.
        """
        with contextlib.ExitStack() as stack:
            if ascent:
                stack.enter_context(self.ascent_context())
            stack.enter_context(torch.set_grad_enabled(backward))
            self._passes += 1
            if backward:
                self.zero_grad(set_to_none=True)
            try:
                loss = closure() if indices is None else closure(indices)
            except RuntimeError as error:  # loss.backward() on a no-grad pass's losses
                if not backward and "does not require grad" in str(error):
                    raise TypeError(self._ran_backward()) from error
                raise
            self._check_loss(loss, indices, per_sample, backward)
            n = len(indices) if indices is not None else (len(loss) if loss.ndim else None)
            self._count("forward_samples", n)
            if backward:
                mean = loss.mean()
                (mean if self.loss_scaler is None else self.loss_scaler.scale(mean)).backward()
                self._count("backward_samples", n)
                self._check_gradient()
        return loss.detach()

    def _ran_backward(self):
        return (f"the closure ran a backward pass itself; for {type(self).__name__} it must only "
                "run the forward and return the losses (closure(indices=None) -> per-sample "
                "losses or their mean): the optimizer runs every backward")

    def _check_loss(self, loss, indices, per_sample, backward):
        """The closure protocol: a tensor of losses, per sample (one per index) where needed,
        with a graph to differentiate on backward passes, and no backward run by it; with
        ``skip_nonfinite``, finite. Shapes and flags only: no value is read on the host."""
        name = type(self).__name__
        if backward and any(p.grad is not None for p in self._params()):
            raise TypeError(self._ran_backward())
        if not torch.is_tensor(loss):
            raise TypeError(f"closure must return a tensor of losses, got {type(loss).__name__}")
        if per_sample and loss.ndim != 1:
            raise TypeError(f"closure must return per-sample losses of shape [n] for {name}, "
                            f"got shape {tuple(loss.shape)}")
        if loss.ndim > 1:
            raise TypeError("closure must return a scalar or per-sample losses of shape [n], "
                            f"got shape {tuple(loss.shape)}")
        if loss.ndim == 1 and indices is not None and len(loss) != len(indices):
            raise TypeError(f"closure(indices) must return one loss per index: {len(indices)} "
                            f"indices, got shape {tuple(loss.shape)}")
        if loss.ndim == 1 and indices is None:
            if self._batch_size is None:
                self._batch_size = len(loss)
            elif len(loss) != self._batch_size:
                raise TypeError(f"closure() must return one loss per sample of the batch in every "
                                f"pass: {self._batch_size} in the step's first full-batch pass, "
                                f"got shape {tuple(loss.shape)}")
        if backward and not loss.requires_grad:
            raise TypeError(f"closure returned losses without a graph (computed under "
                            f"torch.no_grad() or detached); {name} differentiates them: the "
                            "closure must run the forward with gradients enabled")
        # the value is read on the host only to skip (a synchronization with the device per
        # pass); without skip_nonfinite a non-finite loss propagates, as in torch's optimizers
        if self.skip_nonfinite and self.loss_scaler is None:  # overflow: the scaler's business
            if self._on_any_rank(~torch.isfinite(loss).all()):
                raise _NonFiniteStep

    def _check_gradient(self):
        """After a backward: some parameter got a gradient; with ``skip_nonfinite`` (and no
        loss scaler, which handles overflow itself) all of them are finite."""
        grads = [p.grad for p in self._params() if p.grad is not None]
        if not grads and any(_local(p).numel() for p in self._params()):  # FSDP1: a rank may
            # hold no element of any parameter (then none gets a gradient there)
            raise TypeError(f"the closure's losses do not depend on any parameter of "
                            f"{type(self).__name__}: no gradient reached them (a copy of the "
                            "model?)")
        if self.skip_nonfinite and self.loss_scaler is None:
            nonfinite = ~torch.isfinite(self._norm(grads))  # sharded: already the same everywhere
            if self._on_any_rank(nonfinite, reduced=self._shards_span_world()):
                raise _NonFiniteStep

    def _shards_span_world(self):
        """Whether the parameters are sharded over every rank (a norm is then the same on all)."""
        return (self.shard_group is not None
                and dist.get_world_size(self.shard_group) == dist.get_world_size())

    @staticmethod
    def _on_any_rank(flag, reduced=False):
        """The bool tensor ``flag``, or'ed over the ranks when torch.distributed is initialized
        (unless ``reduced``: computed from values already all-reduced over every rank): every
        rank skips a step together (a rank that skipped alone would leave the others waiting in
        the step's next collective). A skip check is one all-reduce per pass."""
        if not reduced and dist.is_available() and dist.is_initialized():
            flag = flag.float()
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag)

    def _count(self, key, n):
        self.stats[key] = None if n is None or self.stats[key] is None else self.stats[key] + n

    # ----------------------------------------------------------------------------- weights
    def _with_grad(self, group):
        return [p for p in group["params"] if p.grad is not None]

    def _grad_norm(self):
        """‖T·g‖ over the parameters with a gradient that the ascent perturbs (groups with
        ρ > 0; T of :meth:`_normalized`): ε lives in their subspace."""
        tensors = []
        biases = self._bias_ids()
        for group in self.param_groups:
            ps = self._with_grad(group)
            if ps and group["rho"]:
                tensors.extend(self._normalized(group, ps, 1, biases))
        return self._norm(tensors)

    def _normalized(self, group, ps, power, biases):
        """T^power·g for the tensors ``ps`` of ``group``. T = 1 unless the group is adaptive; then
        ASAM's normalization operator (Kwon et al., 2021, Sec. 3; SamsungLabs/ASAM):
        T = |w| + η on weights, T = 1 on the tensors in ``biases``. Local shards of sharded
        tensors."""
        grads = [_local(p.grad) for p in ps]
        if not group["adaptive"]:
            return grads
        weights = [i for i, p in enumerate(ps) if id(p) not in biases]
        if not weights:
            return grads
        eta = group.get("eta", self.defaults["eta"])  # groups saved before η existed lack it
        t = torch._foreach_add(torch._foreach_abs([_local(ps[i]) for i in weights]), eta)
        scaled = [grads[i] for i in weights]
        for _ in range(power):
            scaled = torch._foreach_mul(t, scaled)
        for i, g in zip(weights, scaled):
            grads[i] = g
        return grads

    def _bias_ids(self):
        """ids of the parameters ``model`` names as biases (ASAM's T = 1 on them)."""
        if self.model is None or not any(g["adaptive"] for g in self.param_groups):
            return frozenset()
        return frozenset(id(p) for name, p in self.model.named_parameters()
                         if "bias" in name.rsplit(".", 1)[-1])

    @torch.no_grad()
    def _perturb(self, scale=1.0, norm=None):
        """w <- w + ε, ε = ρ·T²g/‖Tg‖ (SAM's ascent, Eq. 2 of vsam.txt; T of :meth:`_normalized`,
        ASAM's operator in adaptive groups), times ``scale``.

        w is kept in the ``backup`` buffer so that :meth:`_restore` undoes the step exactly.
        ``norm`` overrides ‖Tg‖ (ESAM estimates it). A zero gradient gives ε = 0; groups with
        ρ = 0 stay where they are (e.g. LSQ step sizes, quant/optim.py).
        """
        norm = self._grad_norm() if norm is None else norm
        biases = self._bias_ids()
        for group in self.param_groups:
            ps = self._with_grad(group)
            if not ps or not group["rho"]:
                continue
            eps = self._normalized(group, ps, 2, biases)  # before w moves: T is taken at w
            self._move(ps, eps, (group["rho"] * scale / (norm + 1e-12)).to(ps[0].device))

    @torch.no_grad()
    def _move(self, ps, direction, scale):
        """w <- w + scale·d for the tensors ``ps`` and directions ``direction``, w kept in the
        ``backup`` buffer for :meth:`_restore` (the ascent of :meth:`_perturb`, MSAM's descent)."""
        local = [_local(p) for p in ps]  # a sharded tensor's shard: its memory
        torch._foreach_copy_([self._buffer(p, "backup") for p in ps], local)
        self._perturbed.extend(ps)
        torch._foreach_add_(local, torch._foreach_mul([_local(d) for d in direction], scale))

    @torch.no_grad()
    def _restore(self):
        """w+ε -> w, bit-exactly."""
        if self._perturbed:
            torch._foreach_copy_([_local(p) for p in self._perturbed],
                                 [self.state[p]["backup"] for p in self._perturbed])
            self._perturbed = []

    def _buffer(self, p, name):
        state = self.state[p]
        if name not in state:
            state[name] = torch.empty_like(_local(p), memory_format=torch.preserve_format)
        return state[name]

    # ----------------------------------------------------------------------------- state
    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> Dict[str, Any]:
        """torch's layout (``state``, ``param_groups``): the base optimizer's, with the own
        buffers (:attr:`persistent`) in their parameter's state as ``'arsam.<name>'`` and the
        step counters, the generator's state (bytes) and the algorithm's state in
        ``state['arsam']``, which holds no tensor. So FSDP's optimizer state dict
        (``FSDP.optim_state_dict``, mmengine's FSDPStrategy) gathers or shards the buffers like
        the base optimizer's state and copies ``state['arsam']`` (it would drop a nested tensor
        when loading rank 0's full state on every rank)."""
        base = self.base_optimizer.state_dict()
        state = {i: dict(s) for i, s in base["state"].items()}
        index = {p: i for i, p in enumerate(self._params())}
        for p, s in self.state.items():
            own = {OWN_PREFIX + k: s[k].clone() for k in self.persistent if k in s}
            if own and p in index:
                state.setdefault(index[p], {}).update(own)
        state[OWN_STATE] = dict(iteration=self.iteration, skipped_steps=self.skipped_steps,
                                generator=bytes(self.generator.get_state().tolist()),
                                **self._extra_state())  # no tensor: FSDP copies it as it is
        return {"state": state, "param_groups": base["param_groups"]}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Load what :meth:`state_dict` returned, or a state dict of the layout before it (keys
        ``'base_optimizer'`` and ``'arsam'``: checkpoints saved before FSDP support);
        micro-batches accumulated before are dropped (a state holds whole steps only)."""
        state_dict = _current_layout(state_dict)
        self._discard()
        state = dict(state_dict["state"])
        own = state.pop(OWN_STATE)
        base, buffers = {}, {}
        for i, entries in state.items():
            base[i] = {k: v for k, v in entries.items() if not k.startswith(OWN_PREFIX)}
            buffers[i] = {k[len(OWN_PREFIX):]: v for k, v in entries.items()
                          if k.startswith(OWN_PREFIX)}
        self.base_optimizer.load_state_dict(
            {"state": {i: s for i, s in base.items() if s},
             "param_groups": state_dict["param_groups"]})
        self.param_groups = self.base_optimizer.param_groups  # the base made new group dicts
        params = self._params()
        self.state.clear()
        for i, entries in buffers.items():
            p = params[int(i)]
            if entries:
                self.state[p].update({k: v.to(device=p.device, dtype=p.dtype, copy=True)
                                      for k, v in entries.items()})
        self.iteration = own["iteration"]
        self.skipped_steps = own.get("skipped_steps", 0)  # absent from state saved before it
        generator = own["generator"]  # bytes; a ByteTensor in the layout before
        self.generator.set_state(generator if torch.is_tensor(generator) else
                                 torch.frombuffer(bytearray(generator), dtype=torch.uint8))
        self._load_extra_state(own)

    def __getstate__(self):  # torch's keeps only defaults/state/param_groups
        return self.__dict__.copy()

    def _extra_state(self):
        return {}

    def _load_extra_state(self, state):
        pass

    def __repr__(self):
        return f"{type(self).__name__}(base_optimizer={self.base_optimizer!r})"
