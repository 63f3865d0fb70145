"""The engine every sharpness-aware optimizer here is built on.

It owns what the algorithms share: wrapping a base optimizer, running closure passes (BatchNorm
statistics updated by the first pass of a step only, DDP's ``no_sync`` on ascent-only passes, loss
scaling), the ascent perturbation and its exact undo, gradient norms, statistics and state.
An algorithm subclasses :class:`SharpnessAwareOptimizer` and writes ``_gradient(closure)`` the way
its paper writes the step.

The closure protocol: ``closure(indices=None)`` runs a forward pass only, on the whole batch or on
the samples at ``indices`` (a LongTensor), and returns per-sample losses of shape ``[n]`` (a scalar
is accepted by the optimizers that never select samples). The optimizer reduces by the mean and
runs every backward itself.
"""
import contextlib
import math

import torch
from torch import nn


def check_arg(name, value, ok, accepted):
    """Raise ValueError naming ``name`` and the ``accepted`` range unless ``ok``."""
    if not ok:
        raise ValueError(f"{name} must be {accepted}, got {value!r}")


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


def _total_norm(norms):
    if not norms:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms]))


def tensors_norm(tensors):
    """‖(t_1, ..., t_n)‖_2 of a list of tensors, as a 0-dim tensor."""
    return _total_norm(torch._foreach_norm(tensors) if tensors else [])


def tensors_dot(a, b):
    """<(a_1, ..., a_n), (b_1, ..., b_n)> of two lists of tensors, as a 0-dim float64 tensor."""
    if not a:
        return torch.zeros((), dtype=torch.float64)
    return torch.stack([torch.vdot(x.flatten(), y.flatten()) for x, y in zip(a, b)]).double().sum()


@contextlib.contextmanager
def frozen_bn_stats(model):
    """Stop BatchNorm layers in training mode from updating their running statistics.

    With ``track_running_stats`` off a training-mode BatchNorm still normalizes with the batch
    statistics but neither touches ``running_mean``/``running_var`` nor ``num_batches_tracked``,
    so extra passes leave the statistics exactly as the step's first pass set them.
    """
    layers = [] if model is None else [
        m for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    for m in layers:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in layers:
            m.track_running_stats = True


class SharpnessAwareOptimizer(torch.optim.Optimizer):
    """Base of SAM and its efficient variants.

    Args:
        params: parameters or param groups (None when ``base_optimizer`` is an instance).
        base_optimizer: an optimizer class (built here with ``params`` and ``**kwargs``) or an
            already built optimizer instance; it performs every update.
        rho: neighbourhood radius ρ of the ascent step (per param group: a group's ``rho``).
        adaptive: ASAM (Kwon et al., 2021): the ascent is normalized by T = |w| + η element-wise
            on weights and T = 1 on biases, ε = ρ·T²g/‖Tg‖, as in the authors' code
            (SamsungLabs/ASAM). Biases are the parameters whose name (in ``model``) contains
            "bias"; without a model every tensor counts as a weight. ρ is then on another scale
            than SAM's: the authors use ρ = 0.5 on CIFAR-10 and 1.0 on CIFAR-100 (SAM: 0.05, 0.1).
        eta: η of ASAM's T = |w| + η (authors: 0.01; 0 gives davda54/sam's T = |w| on weights),
            a number >= 0 (per param group: a group's ``eta``).
        model: the module trained; needed only for BatchNorm handling (may be set later as
            ``opt.model``). Without it BatchNorm statistics are updated by every pass.
        seed: seed of the optimizer's own random generator (the global RNG is never used); the
            same on every DDP rank so that all ranks take the same random decisions.
        total_steps, steps_per_epoch: the run's length, for arguments given as a fraction of the
            run or in epochs (None: unknown; the mmengine wrappers fill them from the train loop
            before the first step).

    Attributes set by integrations: ``loss_scaler`` (a ``torch.amp.GradScaler``) and
    ``ascent_context`` (a context-manager factory entered around passes whose gradient is used
    only for the perturbation, e.g. DDP's ``model.no_sync``).

    Buffers: ``backup``, a copy of w while the weights are perturbed (one weight-sized buffer).
    """

    #: per-parameter state entries carried by ``state_dict``
    persistent = ()
    #: whether the closure must return per-sample losses (integrations check it before training)
    needs_per_sample_losses = False

    def __init__(self, params, base_optimizer, rho=0.05, *, adaptive=False, eta=0.01, model=None,
                 seed=0, total_steps=None, steps_per_epoch=None, **kwargs):
        check_arg("rho", rho, isinstance(rho, (int, float)) and rho >= 0, "a number >= 0")
        check_arg("eta", eta, isinstance(eta, (int, float)) and not isinstance(eta, bool)
                  and eta >= 0, "a number >= 0")
        for name, value in (("total_steps", total_steps), ("steps_per_epoch", steps_per_epoch)):
            check_arg(name, value, value is None or (
                isinstance(value, int) and not isinstance(value, bool) and value >= 1),
                "None or an int >= 1")
        if isinstance(base_optimizer, torch.optim.Optimizer):
            check_arg("params", params, params is None,
                      "None when base_optimizer is an optimizer instance (its groups are used)")
            if kwargs:
                raise TypeError(f"base optimizer arguments {sorted(kwargs)} given with an "
                                "optimizer instance; set them when building it")
            base = base_optimizer
        elif callable(base_optimizer):
            base = base_optimizer(params, **kwargs)
        else:
            raise TypeError("base_optimizer must be a torch.optim.Optimizer class or instance, "
                            f"got {type(base_optimizer).__name__}")
        super().__init__(base.param_groups, dict(rho=rho, adaptive=adaptive, eta=eta))
        self.base_optimizer = base
        self.param_groups = base.param_groups
        self.defaults.update(base.defaults)
        self.model = model
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.loss_scaler = None
        self.ascent_context = contextlib.nullcontext
        self.generator = torch.Generator().manual_seed(seed)
        self.iteration = 0  # completed steps
        self.stats = {}
        self._perturbed = []
        self._passes = 0

    # ----------------------------------------------------------------------------- the step
    def step(self, closure=None):
        """One optimization step; returns the (detached) loss at w."""
        loss = self.compute_gradient(closure)
        if self.loss_scaler is None:
            self.base_optimizer.step()
        else:
            self.loss_scaler.step(self.base_optimizer)
            self.loss_scaler.update()
        return loss

    def compute_gradient(self, closure):
        """Leave the update gradient in ``.grad`` with the weights back at w; return the loss at w.

        If anything raises, the weights are restored, the step's gradients cleared, the
        generator rewound and no state changed; the exception propagates.
        """
        if not callable(closure):
            raise TypeError(f"closure must be callable, got {type(closure).__name__}")
        generator_state = self.generator.get_state()
        self._passes = 0
        self.stats = dict(sampled=True, sampling_rate=1.0, psf_norm=None,
                          forward_samples=0, backward_samples=0)
        try:
            with torch.enable_grad():
                loss = self._gradient(closure)
        except BaseException:
            self._restore()
            self.zero_grad(set_to_none=True)
            self.generator.set_state(generator_state)
            raise
        self.iteration += 1
        return loss

    def _gradient(self, closure):
        raise NotImplementedError

    # ----------------------------------------------------------------------------- passes
    def _pass(self, closure, indices=None, *, backward=True, per_sample=False, ascent=False):
        """Run the closure once (on ``indices`` if given); backward of the mean unless told not.

        Only the first pass of a step updates BatchNorm running statistics. ``ascent`` marks a
        pass whose gradient serves the perturbation alone (entered in ``ascent_context``).
        Returns the detached losses.
        """
        with contextlib.ExitStack() as stack:
            if self._passes:
                stack.enter_context(frozen_bn_stats(self.model))
            if ascent:
                stack.enter_context(self.ascent_context())
            stack.enter_context(torch.set_grad_enabled(backward))
            self._passes += 1
            loss = closure() if indices is None else closure(indices)
            self._check_loss(loss, per_sample)
            n = len(indices) if indices is not None else (len(loss) if loss.ndim else None)
            self._count("forward_samples", n)
            if backward:
                self.zero_grad(set_to_none=True)
                mean = loss.mean()
                (mean if self.loss_scaler is None else self.loss_scaler.scale(mean)).backward()
                self._count("backward_samples", n)
        return loss.detach()

    def _check_loss(self, loss, per_sample):
        name = type(self).__name__
        if not torch.is_tensor(loss):
            raise TypeError(f"closure must return a tensor of losses, got {type(loss).__name__}")
        if per_sample and loss.ndim != 1:
            raise TypeError(f"closure must return per-sample losses of shape [n] for {name}, "
                            f"got shape {tuple(loss.shape)}")
        if loss.ndim > 1:
            raise TypeError("closure must return a scalar or per-sample losses of shape [n], "
                            f"got shape {tuple(loss.shape)}")

    def _count(self, key, n):
        self.stats[key] = None if n is None or self.stats[key] is None else self.stats[key] + n

    # ----------------------------------------------------------------------------- weights
    def _with_grad(self, group):
        return [p for p in group["params"] if p.grad is not None]

    def _grad_norm(self):
        """‖T·g‖ over the parameters with a gradient that the ascent perturbs (groups with
        ρ > 0; T of :meth:`_normalized`): ε lives in their subspace."""
        norms = []
        biases = self._bias_ids()
        for group in self.param_groups:
            ps = self._with_grad(group)
            if ps and group["rho"]:
                norms.extend(torch._foreach_norm(self._normalized(group, ps, 1, biases)))
        return _total_norm(norms)

    def _normalized(self, group, ps, power, biases):
        """T^power·g for the tensors ``ps`` of ``group``. T = 1 unless the group is adaptive; then
        ASAM's normalization operator (Kwon et al., 2021, Sec. 3; SamsungLabs/ASAM):
        T = |w| + η on weights, T = 1 on the tensors in ``biases``."""
        grads = [p.grad for p in ps]
        if not group["adaptive"]:
            return grads
        weights = [i for i, p in enumerate(ps) if id(p) not in biases]
        if not weights:
            return grads
        eta = group.get("eta", self.defaults["eta"])  # groups saved before η existed lack it
        t = torch._foreach_add(torch._foreach_abs([ps[i] for i in weights]), eta)
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
            backups = [self._buffer(p, "backup") for p in ps]
            torch._foreach_copy_(backups, ps)
            self._perturbed.extend(ps)
            eps = torch._foreach_mul(eps, (group["rho"] * scale / (norm + 1e-12)).to(ps[0].device))
            torch._foreach_add_(ps, eps)

    @torch.no_grad()
    def _restore(self):
        """w+ε -> w, bit-exactly."""
        if self._perturbed:
            torch._foreach_copy_(self._perturbed, [self.state[p]["backup"] for p in self._perturbed])
            self._perturbed = []

    def _buffer(self, p, name):
        state = self.state[p]
        if name not in state:
            state[name] = torch.empty_like(p, memory_format=torch.preserve_format)
        return state[name]

    # ----------------------------------------------------------------------------- state
    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self):
        """The base optimizer's state plus the step counter, the generator and own buffers."""
        index = {p: i for i, p in enumerate(self._params())}
        buffers = {index[p]: {k: s[k].clone() for k in self.persistent if k in s}
                   for p, s in self.state.items() if p in index}
        return {"base_optimizer": self.base_optimizer.state_dict(),
                "arsam": dict(iteration=self.iteration, generator=self.generator.get_state(),
                              buffers={i: b for i, b in buffers.items() if b},
                              **self._extra_state())}

    def load_state_dict(self, state_dict):
        if set(state_dict) != {"base_optimizer", "arsam"}:
            raise ValueError("state_dict must come from an arsam optimizer's state_dict() "
                             f"(keys 'base_optimizer', 'arsam'), got keys {sorted(state_dict)}")
        own = state_dict["arsam"]
        self.base_optimizer.load_state_dict(state_dict["base_optimizer"])
        self.param_groups = self.base_optimizer.param_groups  # the base made new group dicts
        params = self._params()
        self.state.clear()
        for i, buffers in own["buffers"].items():
            p = params[int(i)]
            self.state[p].update({k: v.to(device=p.device, dtype=p.dtype, copy=True)
                                  for k, v in buffers.items()})
        self.iteration = own["iteration"]
        self.generator.set_state(own["generator"])
        self._load_extra_state(own)

    def __getstate__(self):  # torch's keeps only defaults/state/param_groups
        return self.__dict__.copy()

    def _extra_state(self):
        return {}

    def _load_extra_state(self, state):
        pass

    def __repr__(self):
        return f"{type(self).__name__}(base_optimizer={self.base_optimizer!r})"
