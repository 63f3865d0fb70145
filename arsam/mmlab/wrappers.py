"""mmengine optim wrappers: one adapter from mmengine's ``train_step`` to the core optimizers.

``BaseModel.train_step`` runs one forward inside ``optim_context(model)`` and hands the parsed
loss to ``update_params``; it never shows the batch to the wrapper. So ``optim_context`` records,
by a forward pre-hook, the arguments of the model's forward call (the data preprocessor's output)
and ``update_params`` builds the core's closure from them:

* the core's first pass at w on the whole batch *is* the forward train_step already ran (its loss
  is returned, no second forward; for a core that needs per-sample losses that forward computes
  them with the model's per-sample function). What that pass needs is set up before the forward:
  ESAM's SWP selection is drawn (the unchosen tensors build no graph), and a first pass that runs
  no backward (K-SAM's ranking losses) runs without grad;
* every other pass replays the recorded call (``indices``: inputs and data samples sliced), under
  the wrapper's autocast, with BatchNorm statistics frozen (train_step's forward updated them once);
* per-sample losses come from the model's per-sample protocol (per_sample.py).

Under DDP the recorded forward runs in ``no_sync``; replays go through the DDP module, with
``no_sync`` on the core's ascent passes (per-replica ascent, SAM paper) unless ``sync_ascent``;
a reused first pass whose gradient must be synchronized is all-reduced by the wrapper at the end
of its backward. With ``accumulative_counts > 1`` every pass runs in ``no_sync`` and the core
averages the update gradient over the ranks once per step (its ``replica_mean``). The
algorithms live in the core alone; each registered wrapper only names one.
"""
import contextlib
import functools
import inspect
import math
from typing import Any, Dict, Iterator, Optional, Union

import torch
from mmengine.device import get_device
from mmengine.dist import all_reduce_params
from mmengine.logging import MessageHub
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from mmengine.runner.amp import autocast
from torch.nn.parallel import DistributedDataParallel

from ..engine import check_arg, frozen_bn_stats, is_number
from ..esam import ESAM
from ..ksam import KSAM
from ..periodic import PeriodicSAM
from ..looksam import LookSAM
from ..msam import MSAM
from ..reuse import ARSAM
from ..sam import SAM
from .per_sample import find_per_sample_loss

AMP_DTYPES = ("float16", "bfloat16")


class SharpnessAwareOptimWrapper(OptimWrapper):
    """mmengine OptimWrapper around a core optimizer (``core_class``) built on ``optimizer``.

    Args:
        optimizer: the base optimizer built by mmengine's constructor (paramwise_cfg applied).
        accumulative_counts: gradient accumulation over this many iterations (an int >= 1;
            mmengine's ``should_update``/``should_sync``): each iteration's batch is a micro-batch
            with its own sharpness-aware computation (core ``accumulate``), and the base
            optimizer steps on the mean of their update gradients every ``accumulative_counts``
            iterations and at the run's last one (its partial group averaged over its own size,
            as mmengine's loss factor; a group resumed mid-way over the iterations it has), as
            one step on that many DDP ranks with ``sync_ascent=False``. Under DDP every pass runs
            without synchronization and the update gradient is all-reduced once, on the update
            iteration. Core arguments in steps (``start_iter``, K-SAM's ``k2_halve_at``) count
            optimizer steps. LookSAM takes 1 only.
        clip_grad: as mmengine's, applied to the final update gradient (unscaled first).
        dtype, loss_scale: mixed precision, as mmengine's AmpOptimWrapper: either one turns on
            autocast for every pass, in ``dtype`` or else the device's default AMP dtype
            (float16 on CUDA, bfloat16 on CPU); neither: full precision, as OptimWrapper.
            ``dtype``: 'float16' or 'bfloat16' (a str or torch.dtype; CPU: bfloat16 only, as
            mmengine's autocast). ``loss_scale``: None (no scaling; float16 needs a scale),
            'dynamic', a number (static scale) or GradScaler kwargs; the core scales each
            backward and keeps its own buffers unscaled.
        sync_ascent: all-reduce the ascent gradient under DDP (default: per replica).
        **core_kwargs: the core optimizer's arguments (rho, alpha, gamma, k1, ...).

    ``.optimizer`` is the core (its ``param_groups`` are the base optimizer's, so parameter
    schedulers reach the base); ``state_dict`` carries its full state and the loss scaler's.
    Per step the core's ``stats`` are logged as ``train/<key>`` scalars (log and visualizer
    backends); a statistic undefined at a step after being logged reads NaN (vSAM's sgd_norm).
    """

    core_class = None

    def __init__(self, optimizer: torch.optim.Optimizer, accumulative_counts: int = 1,
                 clip_grad: Optional[Dict[str, Any]] = None,
                 dtype: Optional[Union[str, torch.dtype]] = None,
                 loss_scale: Optional[Union[str, float, Dict[str, Any]]] = None,
                 sync_ascent: bool = False, **core_kwargs: Any) -> None:
        name = type(self).__name__
        if self.core_class is None:
            raise TypeError(f"{name} has no core optimizer; use a registered wrapper: "
                            "SAMOptimWrapper, ..., ARSAMOptimWrapper")
        check_arg("accumulative_counts", accumulative_counts, isinstance(
            accumulative_counts, int) and not isinstance(accumulative_counts, bool) and (
            accumulative_counts >= 1), "an int >= 1")
        check_arg("accumulative_counts", accumulative_counts, accumulative_counts == 1 or
                  self.core_class.accumulates, f"1 for {name} ({self.core_class.__name__} does "
                  "not accumulate gradients over micro-batches; use a larger batch)")
        cast_dtype = getattr(torch, dtype) if dtype in AMP_DTYPES else dtype
        check_arg("dtype", dtype, cast_dtype in (None, torch.float16, torch.bfloat16),
                  f"None or an autocast dtype, one of {AMP_DTYPES} (str or torch.dtype)")
        check_arg("loss_scale", loss_scale, loss_scale in (None, "dynamic") or isinstance(
            loss_scale, dict) or (isinstance(loss_scale, (int, float)) and loss_scale > 0),
                  "None, 'dynamic', a number > 0 or a dict of GradScaler arguments")
        check_arg("loss_scale", loss_scale, loss_scale is not None or cast_dtype != torch.float16,
                  "given with dtype='float16' (float16 gradients underflow unscaled; "
                  "AmpOptimWrapper's default is 'dynamic')")
        check_arg("dtype", dtype, get_device() != "cpu" or cast_dtype in (None, torch.bfloat16),
                  "None or 'bfloat16' on CPU (mmengine's CPU autocast)")
        check_arg("sync_ascent", sync_ascent, isinstance(sync_ascent, bool), "a bool")
        check_clip_grad(clip_grad)
        core = self.core_class(None, base_optimizer=optimizer, **core_kwargs)
        super().__init__(core, accumulative_counts=accumulative_counts, clip_grad=clip_grad)
        #: autocast on exactly when AmpOptimWrapper's would be: dtype or loss_scale given
        self.amp = cast_dtype is not None or loss_scale is not None
        self.cast_dtype = cast_dtype  # None under AMP: the device's default (mmengine's autocast)
        self._static_scale = loss_scale if isinstance(loss_scale, (int, float)) else None
        self._scaler_kwargs = None if loss_scale is None else (
            loss_scale if isinstance(loss_scale, dict) else
            {} if loss_scale == "dynamic" else dict(init_scale=float(loss_scale)))
        if loss_scale is not None:
            core.loss_scaler = torch.amp.GradScaler(get_device(), **self._scaler_kwargs)
        core.ascent_context = self._ascent_context
        self.sync_ascent = sync_ascent
        self._model = None     # the model given to optim_context (DDP or not)
        self._calls = []       # recorded (args, kwargs, requires_grad flags) of its forward
        self._first_losses = None  # per-sample losses of the recorded forward
        self._in_ascent = False

    @property
    def loss_scaler(self) -> Optional[torch.amp.GradScaler]:
        return self.optimizer.loss_scaler

    # ----------------------------------------------------------------------------- mmengine API
    @contextlib.contextmanager
    def optim_context(self, model: torch.nn.Module) -> Iterator[None]:
        """Record ``model``'s forward call, the core's first pass (run under autocast, and
        ``no_sync`` under DDP).

        Before it, the core's preparation for that pass (``prepare_first_pass``: ESAM's SWP
        selection is drawn, MSAM's weights move to w + ε; ``cancel_first_pass`` undoes it if the
        forward raises), and a first pass without backward (``first_pass_backward`` False:
        K-SAM) runs without grad. For a core that needs per-sample losses, the forward
        computes them (with the model's per-sample function; train_step then logs their mean as
        ``loss``) and keeps them. Models missing what the core needs fail here, before any pass.
        """
        core = self.optimizer
        module = model.module if is_model_wrapper(model) else model
        per_sample = core.needs_per_sample_losses
        fn = find_per_sample_loss(module)
        if per_sample:
            check_per_sample_protocol(type(self).__name__, module, fn)
        core.model = module  # BatchNorm: statistics from the step's first pass only
        if model is not self._model:
            self._check_sharding(model)
        self._model, self._calls, self._first_losses = model, [], None
        core.prepare_first_pass()
        handle = model.register_forward_pre_hook(self._record, with_kwargs=True)
        try:
            with self._no_sync(model), self._autocast(), torch.set_grad_enabled(
                    getattr(core, "first_pass_backward", True) and torch.is_grad_enabled()), (
                    self._recording_per_sample(module, fn) if per_sample
                    else contextlib.nullcontext()):
                yield
        except BaseException:
            core.cancel_first_pass()
            raise
        finally:
            handle.remove()

    def _check_sharding(self, model):
        """A new model: the core learns whether its parameters are sharded (FSDP1, mmengine's
        FSDPStrategy), and so reduces norms over the shards. A loss scaler becomes FSDP's
        ShardedGradScaler there (its state kept), whose skip decision is every rank's (a
        GradScaler would decide per rank on the rank's shards)."""
        core = self.optimizer
        core.find_shards(model)
        if core.shard_group is not None and type(core.loss_scaler) is torch.amp.GradScaler:
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler
            scaler = ShardedGradScaler(get_device(), process_group=core.shard_group,
                                       **self._scaler_kwargs)
            scaler.load_state_dict(core.loss_scaler.state_dict())
            core.loss_scaler = scaler

    def update_params(self, loss: torch.Tensor, step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        """One sharpness-aware step, or one micro-batch of it (``accumulative_counts``); ``loss``
        is the recorded forward's, reused as first pass."""
        calls, self._calls = self._calls, []
        first_losses, self._first_losses = self._first_losses, None
        if len(calls) != 1:
            raise RuntimeError(
                f"{type(self).__name__}.update_params needs exactly one forward of the model "
                f"inside optim_context(model) (as BaseModel.train_step does), got {len(calls)}")
        core = self.optimizer
        core.replica_mean = self._replica_mean if self._accumulating() else None
        self._inner_count += 1
        self._learn_run_length()
        core.accumulate(self._closure(loss if first_losses is None else first_losses, *calls[0]))
        if not self.should_update():
            return
        core.compute_gradient()
        for key, value in self.optimizer.stats.items():  # undefined now but logged before: NaN
            if value is not None or f"train/{key}" in self.message_hub.log_scalars:
                self.message_hub.update_scalar(f"train/{key}", math.nan if value is None
                                               else float(value))
        self.step(**(step_kwargs or {}))
        self.zero_grad(**(zero_kwargs or {}))

    def _learn_run_length(self):
        """Fill the core's unknown ``total_steps``/``steps_per_epoch`` from the train loop's
        ``max_iters``/``max_epochs`` (mmengine's RuntimeInfoHook puts them in the message hub
        before training). ``ArsamRunner``'s CheckBatchSizeHook has set ``steps_per_epoch`` to
        the train dataloader's length before; without it an iteration-based loop counts as one
        epoch (ARSAM's default warm-up is then 10 % of the run, reuse.py).

        The hub is the current one, the training Runner's, where the statistics and
        ``grad_norm`` go too: a wrapper built before the Runner (those of an OptimWrapperDict
        given built) would otherwise keep the hub current when it was built."""
        self.message_hub = MessageHub.get_current_instance()
        core, hub = self.optimizer, self.message_hub
        max_iters, max_epochs = hub.get_info("max_iters"), hub.get_info("max_epochs")
        if core.total_steps is None and max_iters:
            core.total_steps = math.ceil(int(max_iters) / self._accumulative_counts)
        if core.steps_per_epoch is None and max_iters and max_epochs:
            core.steps_per_epoch = self.steps(int(max_iters) // int(max_epochs))

    def steps(self, iterations: int) -> int:
        """Optimizer steps in ``iterations`` train iterations (an epoch's: at least 1)."""
        return max(1, round(iterations / self._accumulative_counts))

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        raise RuntimeError(f"{type(self).__name__} runs every backward itself: call "
                           "update_params(loss) after the forward inside optim_context(model)")

    def step(self, **kwargs: Any) -> None:
        """Clip the update gradient (unscaled) and step the base optimizer."""
        base, scaler = self.optimizer.base_optimizer, self.optimizer.loss_scaler
        if self.clip_grad_kwargs:
            if scaler is not None:
                scaler.unscale_(base)
            self._clip_grad()
        if scaler is None:
            base.step(**kwargs)
        else:
            scaler.step(base, **kwargs)
            scaler.update(self._static_scale)

    def state_dict(self) -> Dict[str, Any]:
        state = super().state_dict()
        if self.loss_scaler is not None:
            state["loss_scaler"] = self.loss_scaler.state_dict()
        return state

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        scaler_state = state_dict.pop("loss_scaler", None)
        if scaler_state is not None and self.loss_scaler is not None:
            self.loss_scaler.load_state_dict(scaler_state)
        super().load_state_dict(state_dict)

    # ----------------------------------------------------------------------------- the closure
    def _record(self, module, args, kwargs):
        self._calls.append((args, kwargs, self._grad_flags()))

    def _grad_flags(self):
        return [p.requires_grad for p in self.optimizer._params()]

    @contextlib.contextmanager
    def _recording_per_sample(self, module, fn):
        """Make the recorded forward (mode='loss') compute the per-sample losses and keep them."""
        original = module.forward

        def forward(*args, **kwargs):
            inputs, data_samples, mode = batch_arguments(original, args, kwargs)
            if mode != "loss":
                return original(*args, **kwargs)
            self._first_losses = fn(module, inputs, data_samples)
            return {"loss": self._first_losses.mean()}

        with forward_as(module, forward):
            yield

    def _closure(self, recorded, args, kwargs, grad_flags):
        """The core's ``closure(indices=None)`` over the recorded call; ``recorded`` are the
        losses of the recorded forward (per-sample ones if the core needs them)."""
        model = self._model
        module = model.module if is_model_wrapper(model) else model
        per_sample = self.optimizer.needs_per_sample_losses
        first = True

        def closure(indices=None):
            nonlocal first
            reuse = (first and indices is None and (recorded.ndim == 1 or not per_sample)
                     and self._grad_flags() == grad_flags)
            first = False
            synced = self.sync_ascent if self._in_ascent else not self._accumulating()
            if reuse:
                if recorded.requires_grad and self._is_ddp(model) and synced:  # no backward:
                    recorded.register_hook(self._all_reduce_after_backward)  # no all-reduce
                return recorded
            with self._autocast(), frozen_bn_stats(module), (
                    contextlib.nullcontext() if synced else self._no_sync(model)):
                if indices is None and not per_sample:
                    return loss_of(module, model(*args, **kwargs))
                return self._per_sample_losses(model, module, args, kwargs, indices)

        return closure

    @staticmethod
    def _per_sample_losses(model, module, args, kwargs, indices):
        """Per-sample losses of the recorded batch (or of ``indices``), through ``model`` so
        that DDP prepares its gradient synchronization as for any forward."""
        inputs, data_samples, _ = batch_arguments(module.forward, args, kwargs)
        if indices is not None:
            inputs, data_samples = take(inputs, indices), take(data_samples, indices)
        fn = find_per_sample_loss(module)
        if model is module:
            return fn(module, inputs, data_samples)
        with forward_as(module, functools.partial(fn, module)):
            return model(inputs, data_samples)  # DDP calls module(inputs, data_samples)

    # ----------------------------------------------------------------------------- contexts
    def _autocast(self):
        return autocast(dtype=self.cast_dtype) if self.amp else contextlib.nullcontext()

    @staticmethod
    def _is_ddp(model):
        return isinstance(model, DistributedDataParallel)

    def _no_sync(self, model):
        return model.no_sync() if self._is_ddp(model) else contextlib.nullcontext()

    def _accumulating(self):
        """Accumulation under DDP: the passes run unsynchronized, the core averages the update
        gradient over the ranks once per step (``replica_mean``)."""
        return self._accumulative_counts > 1 and self._is_ddp(self._model)

    @staticmethod
    def _replica_mean(grads):
        all_reduce_params(grads, op="mean")

    @contextlib.contextmanager
    def _ascent_context(self):
        """The core's ascent passes: per-replica gradient under DDP unless ``sync_ascent``."""
        self._in_ascent = True
        try:
            with contextlib.nullcontext() if self.sync_ascent else self._no_sync(self._model):
                yield
        finally:
            self._in_ascent = False

    def _all_reduce_after_backward(self, grad):
        """Tensor hook: average the gradients over ranks once this backward has finished."""
        torch.autograd.Variable._execution_engine.queue_callback(
            lambda: all_reduce_params([p.grad for p in self.optimizer._params()
                                       if p.grad is not None], op="mean"))
        return grad


def loss_of(module, output):
    """The loss of a forward's ``output``: reduced by the module's ``parse_losses`` (an mmengine
    BaseModel's, as its train_step does), else the output itself, which must then be the loss
    (a module trained as in OptimWrapper's docstring: ``loss = model(data)`` in optim_context)."""
    if callable(getattr(module, "parse_losses", None)):
        return module.parse_losses(output)[0]
    if torch.is_tensor(output) and output.ndim == 0:
        return output
    shape = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
    raise TypeError(f"the forward of {type(module).__name__} (not an mmengine BaseModel: no "
                    f"parse_losses) returned {shape}; inside optim_context it must return the "
                    "loss given to update_params, a scalar tensor")


def check_per_sample_protocol(wrapper, module, fn):
    """Raise TypeError naming what ``module`` lacks for per-sample losses: a per-sample function
    and a forward whose first two parameters are the batch (any names) and that takes ``mode``."""
    name = type(module).__name__
    if fn is None:
        raise TypeError(
            f"{wrapper} needs per-sample losses but {name} provides none: give it a method "
            "loss_per_sample(inputs, data_samples) or register one with "
            "arsam.mmlab.per_sample.register_per_sample_loss")
    params = inspect.signature(module.forward).parameters
    if len(_positional(params)) < 2 or "mode" not in params:
        raise TypeError(
            f"{wrapper} needs {name}.forward to take the batch as its first two parameters and "
            f"a 'mode' argument (mmengine's forward(inputs, data_samples, mode)), got "
            f"forward{inspect.signature(module.forward)}")


def _positional(params):
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [name for name, p in params.items() if p.kind in kinds]


def batch_arguments(forward, args, kwargs):
    """(inputs, data samples, mode) of a call ``forward(*args, **kwargs)`` of an mmengine model,
    by the parameters' positions in its signature, whatever their names (e.g. ``labels``)."""
    signature = inspect.signature(forward)
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    first, second = _positional(signature.parameters)[:2]
    return bound.arguments[first], bound.arguments[second], bound.arguments["mode"]


@contextlib.contextmanager
def forward_as(module, forward):
    """Make ``module(...)`` call ``forward`` for a while (an instance attribute over the method),
    so that hooks and wrappers around the module (DDP) run as for its own forward."""
    shadowed = module.__dict__.get("forward")
    module.forward = forward
    try:
        yield
    finally:
        if shadowed is None:
            del module.forward
        else:
            module.forward = shadowed


def take(data, indices):
    """The samples at ``indices`` of batched ``data``: a tensor, a list/tuple of per-sample
    items (data samples), a dict of those, or None."""
    if data is None:
        return None
    if torch.is_tensor(data):
        return data[indices.to(data.device)]
    if isinstance(data, (list, tuple)):
        return type(data)(data[i] for i in indices.tolist())
    if isinstance(data, dict):
        return {key: take(value, indices) for key, value in data.items()}
    raise TypeError("cannot select samples of batch data of type "
                    f"{type(data).__name__}; expected a tensor, a list, a tuple or a dict")


def check_clip_grad(clip_grad):
    """ValueError naming ``clip_grad`` unless it is None or mmengine's form with a clipping
    threshold > 0: ``dict(max_norm=..., ...)`` or ``dict(type='value', clip_value=...)``."""
    ok = clip_grad is None
    if isinstance(clip_grad, dict) and clip_grad.get("type", "norm") in ("norm", "value"):
        threshold = clip_grad.get("clip_value" if clip_grad.get("type") == "value" else "max_norm")
        ok = is_number(threshold) and threshold > 0
    check_arg("clip_grad", clip_grad, ok, "None, dict(max_norm=<number > 0>, ...) or "
              "dict(type='value', clip_value=<number > 0>)")


def _register(core_class):
    name = f"{core_class.__name__}OptimWrapper"
    cls = type(name, (SharpnessAwareOptimWrapper,), dict(
        core_class=core_class, __module__=__name__,
        __doc__=f"The mmengine optim wrapper of arsam.{core_class.__name__} (arguments: "
                "SharpnessAwareOptimWrapper's, plus the core optimizer's)."))
    OPTIM_WRAPPERS.register_module(module=cls, force=True)
    return cls


SAMOptimWrapper = _register(SAM)
ESAMOptimWrapper = _register(ESAM)
KSAMOptimWrapper = _register(KSAM)
PeriodicSAMOptimWrapper = _register(PeriodicSAM)
LookSAMOptimWrapper = _register(LookSAM)
MSAMOptimWrapper = _register(MSAM)
ARSAMOptimWrapper = _register(ARSAM)
#: vSAM and ARSAM are one optimizer (arsam.VSAM is arsam.ARSAM): one wrapper, two names
VSAMOptimWrapper = ARSAMOptimWrapper
OPTIM_WRAPPERS.register_module(name="VSAMOptimWrapper", module=ARSAMOptimWrapper, force=True)
