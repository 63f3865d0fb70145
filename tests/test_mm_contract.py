"""mmengine's OptimWrapper contract, as mmengine 0.10.7 tests it (tests/test_optim: the
optimizer wrapper, AmpOptimWrapper, OptimWrapperDict, the default constructor, the parameter
schedulers), for the seven registered sharpness-aware wrappers.

Adapted where a SAM step needs the batch: ``update_params`` takes the loss of a forward run
inside ``optim_context(model)`` (``BaseModel.train_step``), so steps run through
``train_step`` or the Runner. What each step really does is read at the base optimizer: a
step pre-hook records the lr, momentum and gradients its update uses. Accumulation
(``accumulative_counts``): test_update_params and test_initialize_iter_status here, their DDP
test_optim_context (no synchronization but on update iterations, where ``should_sync()`` allows
it) in test_mm_accumulate.py, with the Runner's runs and LookSAM's refusal."""
import copy
import logging
import math
import re

import pytest
import torch
from mm_tiny import (BATCH, KillAt, Killed, TinyData, assert_equal_states, assert_same_weights,
                     make_model, make_runner, optim_cfg)
from mmengine.hooks import Hook
from mmengine.logging import MessageHub, MMLogger
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapperDict, build_optim_wrapper
from mmengine.structures import BaseDataElement
from torch import nn

import arsam
from arsam.engine import OWN_PREFIX, OWN_STATE
from arsam.mmlab.runner import ArsamRunner

STEPS = 4
#: the seven registered wrappers (VSAMOptimWrapper is ARSAMOptimWrapper; ASAM is SAM's
#: adaptive=True), with arguments under which each one's own mechanism acts within 4 steps
WRAPPERS = {
    "SAM": dict(rho=0.05),
    "ESAM": dict(rho=0.05, beta=0.6, gamma=0.5),                   # SWP draws, SDS selection
    "KSAM": dict(rho=0.05, k1=0.25, k2=0.5),                       # per-sample top-k
    "PeriodicSAM": dict(rho=0.05, k=2),                            # SAM on steps 0, 2
    "LookSAM": dict(rho=0.05, k=2),                                # g_v reused on steps 1, 3
    "MSAM": dict(rho=0.3),                                         # the momentum's descent
    "ARSAM": dict(rho=0.05, schedule="fixed", rate=0.5, start_iter=1),  # PSF reused
}
NAMES = sorted(WRAPPERS)
PARAMWISE = dict(bias_lr_mult=2.0, bias_decay_mult=0.0, norm_decay_mult=0.0,
                 custom_keys={"fc": dict(lr_mult=0.5, decay_mult=3.0, rho=0.1)})


def wrapper_cfg(name, **kwargs):
    return optim_cfg(f"{name}OptimWrapper", **WRAPPERS[name], **kwargs)


def record_base_steps(base, log):
    """Log, before each step of the base optimizer, its groups' lr and momentum and the
    gradients it is about to apply (a step skipped by a loss scaler logs nothing)."""
    def hook(optimizer, args, kwargs):
        log.append(dict(lr=[g["lr"] for g in optimizer.param_groups],
                        momentum=[g["momentum"] for g in optimizer.param_groups],
                        grads=[p.grad.clone() for g in optimizer.param_groups
                               for p in g["params"] if p.grad is not None]))
    base.register_step_pre_hook(hook)


class BaseSteps(Hook):
    """The steps the base optimizer of the Runner's wrapper (or of each in a dict) takes."""

    def __init__(self):
        self.log = []

    def before_train(self, runner):
        wrappers = runner.optim_wrapper
        for wrapper in wrappers.values() if isinstance(wrappers, OptimWrapperDict) else [wrappers]:
            record_base_steps(wrapper.optimizer.base_optimizer, self.log)


def core_run(model, name, steps, paramwise_cfg=None, lrs=None, momenta=None, clip=None,
             groups=None):
    """Train a copy of ``model`` with the core alone on the Runner's batches, its base optimizer
    built by mmengine's constructor (``paramwise_cfg`` applied) as for OptimWrapper.

    ``lrs``/``momenta``: the value of every group at each step (schedulers); ``clip``: the
    wrapper's ``clip_grad`` applied to the update gradient; ``groups``: the iterations whose
    batches each step accumulates (the core's ``accumulate``; default one each, ``steps`` of
    them). Returns the model and the log of :func:`record_base_steps` (gradients before
    clipping in ``unclipped``)."""
    model = copy.deepcopy(model).train()
    cfg = optim_cfg("OptimWrapper", paramwise_cfg=paramwise_cfg or {})
    base = build_optim_wrapper(model, cfg).optimizer
    core = getattr(arsam, name)(None, base_optimizer=base, model=model, **WRAPPERS[name])
    log, data = [], TinyData()
    record_base_steps(base, log)

    def closure(x, y):
        def losses(indices=None):
            xb, yb = (x, y) if indices is None else (x[indices], y[indices])
            return torch.nn.functional.cross_entropy(model.logits(xb), yb, reduction="none")
        return losses
    for step, group in enumerate(groups or [[it] for it in range(steps)]):
        for param_group in base.param_groups:
            if lrs is not None:
                param_group["lr"] = lrs[step]
            if momenta is not None:
                param_group["momentum"] = momenta[step]
        for it in group:
            core.accumulate(closure(*data.batch(it)))
        core.compute_gradient()
        grads = [p for p in model.parameters() if p.grad is not None]
        unclipped = [p.grad.clone() for p in grads]
        if clip is not None and clip.get("type", "norm") == "norm":
            torch.nn.utils.clip_grad_norm_(grads, clip["max_norm"])
        elif clip is not None:
            torch.nn.utils.clip_grad_value_(grads, clip["clip_value"])
        base.step()
        log[-1]["unclipped"] = unclipped
    return model, log


def batch(it):
    """Iteration ``it``'s batch, as the Runner's dataloader gives it to ``train_step``."""
    x, y = TinyData().batch(it)
    return dict(inputs=x, data_samples=[BaseDataElement(label=label) for label in y])


# ------------------------------------------------------------------- OptimWrapper's own tests
@pytest.mark.parametrize("name", NAMES)
def test_init(name):
    model = make_model()
    wrapper = build_optim_wrapper(model, wrapper_cfg(name))
    core = wrapper.optimizer
    assert type(core) is getattr(arsam, name) and isinstance(core.base_optimizer,
                                                             torch.optim.SGD)
    assert wrapper.param_groups is core.param_groups is core.base_optimizer.param_groups
    assert wrapper.defaults["lr"] == 0.1 and wrapper.defaults["rho"] == WRAPPERS[name]["rho"]
    assert wrapper.clip_grad_kwargs is None and wrapper._accumulative_counts == 1
    assert wrapper.message_hub is MessageHub.get_current_instance()
    assert (wrapper.inner_count, wrapper._max_counts, wrapper._remainder_counts) == (0, -1, -1)
    assert wrapper.loss_scaler is None and wrapper.base_param_settings is None  # one group


@pytest.mark.parametrize("clip_grad", [[], {}, dict(type="value"), dict(type="norm2", max_norm=1)])
def test_a_clip_grad_mmengine_refuses_is_refused_at_build(clip_grad):
    message = ("clip_grad must be None, dict(max_norm=<number > 0>, ...) or "
               f"dict(type='value', clip_value=<number > 0>), got {clip_grad!r}")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build_optim_wrapper(make_model(), optim_cfg("SAMOptimWrapper", clip_grad=clip_grad))


@pytest.mark.parametrize("name", NAMES)
def test_get_lr_and_get_momentum(name):
    model = make_model()
    sgd = build_optim_wrapper(model, wrapper_cfg(name))
    assert sgd.get_lr() == dict(lr=[0.1]) and sgd.get_momentum() == dict(momentum=[0.9])
    adam = build_optim_wrapper(model, dict(wrapper_cfg(name), optimizer=dict(
        type="Adam", lr=0.01, betas=(0.8, 0.99))))
    assert adam.get_lr() == dict(lr=[0.01]) and adam.get_momentum() == dict(momentum=[0.8])
    groups = build_optim_wrapper(model, wrapper_cfg(name, paramwise_cfg=PARAMWISE))
    plain = build_optim_wrapper(model, optim_cfg("OptimWrapper", paramwise_cfg=PARAMWISE))
    assert groups.get_lr() == plain.get_lr() and groups.get_lr()["base_lr"] == [0.1]
    assert sorted(groups.get_lr()["lr"]) == [0.05, 0.05, 0.1, 0.1, 0.1, 0.2]
    assert groups.get_momentum() == plain.get_momentum() == dict(momentum=[0.9] * 6)


@pytest.mark.parametrize("name", NAMES)
def test_zero_grad_and_step_act_on_the_base_optimizer(name):
    """``step()`` clips (here: none) and steps the base optimizer with the gradient in ``.grad``;
    it runs no sharpness-aware computation (``update_params`` does). ``zero_grad`` clears every
    gradient (None, or zeros with ``set_to_none=False``)."""
    model = make_model()
    twin = copy.deepcopy(model)
    wrapper = build_optim_wrapper(model, wrapper_cfg(name))
    sgd = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for m in (model, twin):
        torch.manual_seed(1)
        m(torch.randn(4, 1, 6, 6), mode="tensor").square().sum().backward()
    wrapper.step()
    sgd.step()
    assert_same_weights(model, twin, rtol=0, atol=0)
    assert wrapper.optimizer.iteration == 0
    wrapper.zero_grad(set_to_none=False)
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.parameters())
    wrapper.zero_grad()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_update_params_steps_and_zeroes_with_the_given_kwargs(name, monkeypatch):
    model = make_model()
    wrapper = build_optim_wrapper(model, wrapper_cfg(name))
    calls = []
    monkeypatch.setattr(wrapper, "step", lambda **kw: calls.append(("step", kw)))
    monkeypatch.setattr(wrapper, "zero_grad", lambda **kw: calls.append(("zero_grad", kw)))
    data = model.data_preprocessor(batch(0), True)
    with wrapper.optim_context(model):
        loss = model(**data, mode="loss")["loss"]
    wrapper.update_params(loss, step_kwargs=dict(a=1), zero_kwargs=dict(set_to_none=False))
    assert calls == [("step", dict(a=1)), ("zero_grad", dict(set_to_none=False))]
    assert wrapper.inner_count == 1 and wrapper.optimizer.iteration == 1
    assert any(p.grad is not None for p in model.parameters())  # zero_grad was mocked


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_and_load_state_dict(name):
    """The wrapper's state is its core's (the base optimizer's and the algorithm's); loaded in a
    fresh wrapper, the next steps are bit-identical."""
    model = make_model()
    wrapper = build_optim_wrapper(model, wrapper_cfg(name, paramwise_cfg=PARAMWISE))
    for it in range(3):
        model.train_step(batch(it), wrapper)
    state = wrapper.state_dict()
    settings = state.pop("base_param_settings")  # several groups: mmengine's extra entry
    assert settings is wrapper.base_param_settings
    assert_equal_states(state, wrapper.optimizer.state_dict())
    twin = copy.deepcopy(model)
    fresh = build_optim_wrapper(twin, wrapper_cfg(name, paramwise_cfg=PARAMWISE))
    fresh.load_state_dict(copy.deepcopy(wrapper.state_dict()))  # as from a checkpoint file
    assert_equal_states(fresh.state_dict(), wrapper.state_dict())
    for it in range(3, 5):
        model.train_step(batch(it), wrapper)
        twin.train_step(batch(it), fresh)
    assert_same_weights(model, twin, rtol=0, atol=0)


def test_loading_a_base_optimizers_state_is_refused():
    """mmengine's wrappers load a bare optimizer's state dict; ours refuse one (it holds no
    step counter, generator or reuse buffers: it comes from another kind of run). A run of
    OptimWrapper switches to a sharpness-aware wrapper with load_from (weights), not resume."""
    model = make_model()
    wrapper = build_optim_wrapper(model, wrapper_cfg("SAM"))
    plain = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"state_dict must come from an arsam optimizer's "
                                         r"state_dict\(\): its 'state' has no entry 'arsam' "
                                         r"\(the optimizer's own state; a base optimizer's "
                                         r"state_dict\?\)"):
        wrapper.load_state_dict(plain.state_dict())


class LossNet(nn.Module):
    """A plain module whose forward returns the loss (``with_loss=False``: the logits)."""

    def __init__(self, with_loss=True):
        super().__init__()
        self.net, self.with_loss = make_model(), with_loss

    def forward(self, x, y):
        logits = self.net.logits(x)
        return torch.nn.functional.cross_entropy(logits, y) if self.with_loss else logits


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("ESAM", "KSAM")])
def test_the_loop_of_optim_wrappers_docstring_trains_a_plain_module(name):
    """``with optim_context(model): loss = model(data)``, then ``update_params(loss)``: a module
    without parse_losses whose forward returns the loss (ESAM and K-SAM need per-sample losses,
    an mmengine model's protocol)."""
    model = LossNet()
    expected, _ = core_run(model.net, name, STEPS)
    wrapper = build_optim_wrapper(model, wrapper_cfg(name))
    for it in range(STEPS):
        with wrapper.optim_context(model):
            loss = model(*TinyData().batch(it))
        wrapper.update_params(loss)
    assert_same_weights(model.net, expected)
    logits = LossNet(with_loss=False)
    wrapper = build_optim_wrapper(logits, wrapper_cfg(name))
    before = copy.deepcopy(dict(logits.named_parameters()))
    with wrapper.optim_context(logits):
        out = logits(*TinyData().batch(0))
    if name == "MSAM":  # its one pass is the forward's own: no output is replayed, no error
        return
    with pytest.raises(TypeError, match=r"^the forward of LossNet \(not an mmengine BaseModel: "
                                        r"no parse_losses\) returned \(8, 3\); inside "
                                        r"optim_context it must return the loss given to "
                                        r"update_params, a scalar tensor$"):
        wrapper.update_params(out.logsumexp(1).mean())
    for key, value in logits.named_parameters():  # the step was undone
        assert torch.equal(value, before[key]) and value.grad is None, key
    assert wrapper.optimizer.iteration == 0


# ---------------------------------------------------------------------- gradient accumulation
#: the wrappers that take accumulative_counts > 1 (LookSAM's refusal and its message:
#: test_mm_accumulate.py::test_looksam_takes_no_accumulation)
ACCUMULATING = [name for name in NAMES if name != "LookSAM"]
TIGHT = dict(rtol=1e-6, atol=1e-7)
COUNT_STATUS = {  # initialize_count_status(model, init, max) before 7 iterations; the groups
    "a run of 7": ((0, 7), [[0, 1, 2], [3, 4, 5], [6]]),  # remainder: a group of 1
    "resumed at 3 of 10": ((3, 10), [[0, 1, 2], [3, 4, 5], [6]]),
    "not initialized": (None, [[0, 1, 2], [3, 4, 5]]),  # the 7th iteration waits for 2 more
}


@pytest.mark.parametrize("status", sorted(COUNT_STATUS))
@pytest.mark.parametrize("name", ACCUMULATING)
def test_update_params_accumulates_and_steps_on_the_groups_mean(name, status):
    """mmengine's test_update_params with ``accumulative_counts=3``: the base optimizer steps
    every third call and, once ``initialize_count_status`` gave the run's length, at its last
    one over the remainder group (mmengine's loss factor: its size); not initialized, the last
    group waits. ``should_sync()`` before a call is ``should_update()`` after it. Weights stay at
    w between update calls (no perturbation left, ``.grad`` empty: the core keeps the sum
    aside), and the gradient each base step applies is the mean over its group's micro-batches:
    the core's ``accumulate`` on them, then one step."""
    counts, groups = COUNT_STATUS[status]
    model = make_model()
    initial = copy.deepcopy(model)
    MessageHub.get_instance(f"accumulate-{name}-{status}")  # no other run's length
    wrapper = build_optim_wrapper(model, wrapper_cfg(name, accumulative_counts=3))
    if counts is not None:
        wrapper.initialize_count_status(model, *counts)
    log = []
    record_base_steps(wrapper.optimizer.base_optimizer, log)
    updates = [group[-1] for group in groups]
    for it in range(7):
        before = [p.detach().clone() for p in model.parameters()]
        sync = wrapper.should_sync()
        model.train_step(batch(it), wrapper)
        assert sync == wrapper.should_update() == (it in updates), it
        moved = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
        assert moved == [it in updates] * len(moved), it
        assert len(log) == sum(u <= it for u in updates) and all(
            p.grad is None for p in model.parameters()), it
    assert wrapper.inner_count == (counts[0] if counts else 0) + 7
    assert wrapper.optimizer.iteration == len(groups)
    expected, reference = core_run(initial, name, None, groups=groups)
    for ours, ref in zip(log, reference, strict=True):
        torch.testing.assert_close(ours["grads"], ref["grads"], **TIGHT)
    if name != "ARSAM":  # the mean of each micro-batch's own step at w (ARSAM: one decision
        alone = [core_run(initial, name, 1, groups=[[it]])[1][0]["grads"]  # and ascent a group)
                 for it in groups[0]]
        torch.testing.assert_close(log[0]["grads"], [torch.stack(g).mean(0) for g in zip(*alone)],
                                   **TIGHT)
    if counts is None:  # the pending 7th micro-batch's forward updated BatchNorm's statistics
        expected.load_state_dict({k: v for k, v in model.state_dict().items()
                                  if k.startswith("bn.")}, strict=False)
    assert_same_weights(model, expected, **TIGHT)


class MMWarnings(logging.Handler):
    """The messages logged at WARNING or above to the current MMLogger (mmengine's
    ``print_log(logger='current')``) while it is attached."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    def __enter__(self):
        MMLogger.get_current_instance().addHandler(self)
        return self.messages

    def __exit__(self, *exc):
        MMLogger.get_current_instance().removeHandler(self)


RESUMED = ("Resumed iteration number is not divisible by `_accumulative_counts` in "
           "`GradientCumulativeOptimizerHook`, which means the gradient of some iterations is "
           "lost and the result may be influenced slightly.")
WITH_BN = ("Gradient accumulative may slightly decrease performance because the model has "
           "BatchNorm layers.")


@pytest.mark.parametrize("bn, counts, init, max_counts, warnings, remainder", [
    (False, 3, 0, 100, [], 1),
    (False, 3, 2, 100, [RESUMED], 1),  # iterations 0, 1 of the group are not in the checkpoint
    (True, 3, 0, 99, [WITH_BN], 0),    # each micro-batch's first pass updates the statistics
    (True, 1, 2, 100, [], 0),
])
@pytest.mark.parametrize("name", ACCUMULATING)
def test_initialize_count_status_as_mmengines(name, bn, counts, init, max_counts, warnings,
                                              remainder):
    """mmengine's test_initialize_iter_status: the run's remainder group and mmengine's two
    warnings, which hold for our wrappers too (a group resumed mid-way is averaged over the
    iterations it has, test_mm_accumulate.py; BatchNorm sees micro-batches)."""
    model = make_model(bn=bn)
    wrapper = build_optim_wrapper(model, wrapper_cfg(name, accumulative_counts=counts))
    with MMWarnings() as logged:
        wrapper.initialize_count_status(model, init, max_counts)
    assert logged == warnings
    assert (wrapper.inner_count, wrapper._max_counts, wrapper._remainder_counts) == (
        init, max_counts, remainder)


# ----------------------------------------------------------------- the constructor, schedulers
@pytest.mark.parametrize("name", NAMES)
def test_paramwise_cfg_reaches_the_base_optimizers_groups(tmp_path, name):
    """mmengine's constructor builds the base optimizer's groups exactly as for OptimWrapper
    (lr and decay multipliers; custom keys may set ``rho`` per group), and the steps use them."""
    model = make_model()
    cfg = wrapper_cfg(name, paramwise_cfg=PARAMWISE)
    ours = build_optim_wrapper(copy.deepcopy(model), cfg).optimizer.base_optimizer
    plain = build_optim_wrapper(copy.deepcopy(model), optim_cfg(
        "OptimWrapper", paramwise_cfg=PARAMWISE)).optimizer
    settings = [{k: v for k, v in g.items() if k != "params"} for g in ours.param_groups]
    rho = WRAPPERS[name]["rho"]
    assert settings == [dict(s, rho=s.get("rho", rho), adaptive=False, eta=0.01) for s in (
        {k: v for k, v in g.items() if k != "params"} for g in plain.param_groups)]
    assert [s["rho"] for s in settings] == [rho] * 4 + [0.1] * 2  # fc's custom key
    expected, _ = core_run(model, name, STEPS, paramwise_cfg=PARAMWISE)
    runner = make_runner(tmp_path, model, cfg, max_iters=STEPS)
    runner.train()
    assert_same_weights(runner.model, expected)


SCHEDULES = {  # loop, schedulers, the lr and momentum of each of the 4 steps (by hand)
    "by-iter": (dict(by_epoch=False, max_iters=4), [
        dict(type="LinearLR", start_factor=0.5, by_epoch=False, begin=0, end=3),
        dict(type="MultiStepMomentum", milestones=[3], gamma=0.5, by_epoch=False)],
        [0.05, 0.075, 0.1, 0.1], [0.9, 0.9, 0.9, 0.45]),
    "by-epoch": (dict(by_epoch=True, max_epochs=2), [
        dict(type="MultiStepLR", milestones=[1], gamma=0.1, by_epoch=True),
        dict(type="MultiStepMomentum", milestones=[1], gamma=0.5, by_epoch=True)],
        [0.1, 0.1, 0.01, 0.01], [0.9, 0.9, 0.45, 0.45]),
    "by-epoch-converted": (dict(by_epoch=True, max_epochs=2), [
        dict(type="LinearLR", start_factor=0.5, by_epoch=True, begin=0, end=1,
             convert_to_iter_based=True)],  # over the epoch's 2 iterations
        [0.05, 0.1, 0.1, 0.1], [0.9] * 4),
}


def epoch_runner(tmp_path, model, optim_wrapper, train_cfg, **kwargs):
    """make_runner with ``train_cfg``; an epoch loop gets DefaultSampler (2 steps an epoch)."""
    sampler = dict(type="DefaultSampler" if train_cfg["by_epoch"] else "InfiniteSampler",
                   shuffle=False)
    return make_runner(tmp_path, model, optim_wrapper, train_cfg=train_cfg,
                       train_dataloader=dict(dataset=TinyData(), batch_size=BATCH, num_workers=0,
                                             sampler=sampler,
                                             collate_fn=dict(type="default_collate")), **kwargs)


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("name", NAMES)
def test_param_schedulers_set_the_lr_the_base_optimizer_uses(tmp_path, name, schedule):
    train_cfg, schedulers, lrs, momenta = SCHEDULES[schedule]
    model = make_model()
    expected, _ = core_run(model, name, STEPS, lrs=lrs, momenta=momenta)
    steps = BaseSteps()
    runner = epoch_runner(tmp_path, model, wrapper_cfg(name), train_cfg,
                          param_scheduler=schedulers, custom_hooks=[steps])
    runner.train()
    used = [(s["lr"][0], s["momentum"][0]) for s in steps.log]  # one group
    assert [lr for lr, _ in used] == pytest.approx(lrs, rel=1e-12)
    assert [m for _, m in used] == pytest.approx(momenta, rel=1e-12)
    logged = runner.message_hub.log_scalars["train/lr"].data[0]  # get_lr() at each iteration
    assert logged.tolist() == [lr for lr, _ in used]
    assert_same_weights(runner.model, expected)


def test_a_scheduler_of_rho_reaches_the_core(tmp_path):
    """``rho`` is a param-group setting: mmengine's generic parameter schedulers schedule it."""
    model = make_model()
    runner = make_runner(tmp_path, model, wrapper_cfg("SAM"), max_iters=STEPS,
                         param_scheduler=dict(type="MultiStepParamScheduler", param_name="rho",
                                              milestones=[2], gamma=0.0, by_epoch=False))
    seen = []

    class Rho(Hook):
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            seen.append(runner.optim_wrapper.optimizer.param_groups[0]["rho"])
    runner.register_hook(Rho(), "LOWEST")
    runner.train()
    assert seen == [0.05, 0.05, 0.0, 0.0]


# -------------------------------------------------------------------------------- clip_grad
CLIPS = {"norm": dict(max_norm=0.05), "value": dict(type="value", clip_value=0.005)}


@pytest.mark.parametrize("clip", sorted(CLIPS))
@pytest.mark.parametrize("name", NAMES)
def test_clip_grad_clips_the_final_update_gradient(tmp_path, name, clip):
    """The base optimizer applies the core's update gradient clipped as mmengine clips: by its
    total norm (to ``max_norm``, the norm before clipping logged as ``train/grad_norm``) or
    element-wise (to ``clip_value``)."""
    model = make_model()
    expected, reference = core_run(model, name, STEPS, clip=CLIPS[clip])
    steps = BaseSteps()
    runner = make_runner(tmp_path, model, wrapper_cfg(name, clip_grad=dict(CLIPS[clip])),
                         max_iters=STEPS, custom_hooks=[steps])
    runner.train()
    assert len(steps.log) == STEPS
    norms = []
    for ours, ref in zip(steps.log, reference):
        torch.testing.assert_close(ours["grads"], ref["grads"])
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g)
                                                     for g in ref["unclipped"]]))
        norms.append(norm.item())
        if clip == "norm":  # clip_grad_norm_ scales by max_norm / (norm + 1e-6)
            clipped = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g)
                                                            for g in ours["grads"]]))
            torch.testing.assert_close(clipped.item(), 0.05 * norm.item() / (norm.item() + 1e-6))
        else:
            assert max(g.abs().max().item() for g in ours["grads"]) == pytest.approx(0.005)
            assert all(torch.equal(g, u.clamp(-0.005, 0.005))
                       for g, u in zip(ref["grads"], ref["unclipped"]))
    assert min(norms) > 0.05  # every step was clipped
    if clip == "norm":
        logged = runner.message_hub.log_scalars["train/grad_norm"].data[0].tolist()
        assert logged == pytest.approx(norms, rel=1e-5)
    assert_same_weights(runner.model, expected)


# ------------------------------------------------------------------------------ loss scaling
@pytest.mark.parametrize("loss_scale, scale, static", [
    ("dynamic", 2.0 ** 16, None), (512.0, 512.0, 512.0),
    (dict(init_scale=2.0 ** 10, growth_factor=4.0), 2.0 ** 10, None)])
def test_the_loss_scaler_is_built_as_amp_optim_wrappers(loss_scale, scale, static):
    """AmpOptimWrapper's forms of ``loss_scale``: 'dynamic' (GradScaler's defaults), a float (a
    static scale, passed to ``update``) or GradScaler's kwargs; its state in ``state_dict``."""
    model = make_model()
    wrapper = build_optim_wrapper(model, wrapper_cfg("SAM", loss_scale=loss_scale))
    scaler = wrapper.loss_scaler
    assert isinstance(scaler, torch.amp.GradScaler) and scaler is wrapper.optimizer.loss_scaler
    assert (scaler.get_scale(), wrapper._static_scale) == (scale, static)
    if isinstance(loss_scale, dict):
        assert scaler.get_growth_factor() == 4.0
    for it in range(2):
        model.train_step(batch(it), wrapper)
    state = wrapper.state_dict()
    assert state["loss_scaler"] == scaler.state_dict() and state["loss_scaler"]["scale"] == scale
    state["loss_scaler"]["scale"] = 8.0
    fresh = build_optim_wrapper(copy.deepcopy(model), wrapper_cfg("SAM", loss_scale=loss_scale))
    fresh.load_state_dict(state)
    assert fresh.loss_scaler.get_scale() == 8.0


class InfData(TinyData):
    """TinyData whose second batch (samples 8-15) is infinite: iterations 1 and 3 overflow."""

    def __init__(self):
        super().__init__()
        self.x[BATCH:] = math.inf


def own_buffers(state_dict):
    """The algorithm's per-parameter buffers in an arsam state dict (``'arsam.<name>'``)."""
    return {i: {k: v for k, v in s.items() if k.startswith(OWN_PREFIX)}
            for i, s in state_dict["state"].items() if i != OWN_STATE}


class Snapshots(Hook):
    """Weights, the base optimizer's state and the scale after each iteration."""

    def __init__(self):
        self.after = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        wrapper = runner.optim_wrapper
        self.after.append((copy.deepcopy(runner.model.state_dict()),
                           copy.deepcopy(wrapper.optimizer.base_optimizer.state_dict()),
                           copy.deepcopy(own_buffers(wrapper.optimizer.state_dict())),
                           wrapper.loss_scaler.get_scale()))


@pytest.mark.parametrize("name", NAMES)
def test_an_overflowed_step_is_skipped_and_the_scale_backs_off(tmp_path, name):
    """As AmpOptimWrapper: a step whose gradients overflow changes nothing (weights, the base
    optimizer's state and the algorithm's buffers) and the dynamic scale halves; it grows
    after ``growth_interval`` good steps. The algorithm counts the step (PeriodicSAM's period,
    ARSAM's warm-up), as the parameter schedulers count it."""
    model = make_model(bn=False)
    snapshots, steps = Snapshots(), BaseSteps()
    runner = make_runner(tmp_path, model, wrapper_cfg(name, loss_scale=dict(
        init_scale=2.0 ** 10, growth_interval=1)), max_iters=STEPS, data=InfData(),
        custom_hooks=[snapshots, steps])
    runner.train()
    assert [s[3] for s in snapshots.after] == [2.0 ** 11, 2.0 ** 10, 2.0 ** 11, 2.0 ** 10]
    assert len(steps.log) == 2  # the base optimizer stepped at iterations 0 and 2 only
    for good, overflowed in ((0, 1), (2, 3)):
        for a, b in zip(snapshots.after[good][:3], snapshots.after[overflowed][:3]):
            assert_equal_states(a, b)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert runner.optim_wrapper.optimizer.iteration == STEPS  # counted, as by the schedulers


# ------------------------------------------------------------------------------ OptimWrapperDict
class Ensemble(BaseModel):
    """One classifier per wrapper, each trained by its own wrapper of an OptimWrapperDict
    (a train_step as mmengine's multi-optimizer models write it)."""

    def __init__(self):
        super().__init__()
        self.nets = nn.ModuleDict({name: make_model(seed=i) for i, name in enumerate(NAMES)})

    def forward(self, inputs, data_samples=None, mode="tensor"):
        return {name: net(inputs, data_samples, mode) for name, net in self.nets.items()}

    def train_step(self, data, optim_wrapper):
        data = self.data_preprocessor(data, True)
        log_vars = {}
        for name, net in self.nets.items():
            with optim_wrapper[name].optim_context(net):
                losses = net(**data, mode="loss")
            loss, log = net.parse_losses(losses)
            optim_wrapper[name].update_params(loss)
            log_vars[f"{name}.loss"] = log["loss"]
        return log_vars


def ensemble_runner(work_dir, model, **kwargs):
    """A Runner of ``model`` with an OptimWrapperDict, its wrappers built first (while the
    current message hub is another run's, as in a script that trains twice)."""
    MessageHub.get_instance(f"earlier-{work_dir}").update_info("max_iters", 1000)
    wrappers = {name: build_optim_wrapper(net, wrapper_cfg(name))
                for name, net in model.nets.items()}
    schedulers = {name: dict(type="MultiStepLR", milestones=[i % 3 + 1], gamma=0.1,
                             by_epoch=False) for i, name in enumerate(NAMES)}
    return make_runner(work_dir, model, wrappers, max_iters=STEPS, param_scheduler=schedulers,
                       runner_class=ArsamRunner, **kwargs)


def test_an_optim_wrapper_dict_of_our_wrappers_trains_each_as_its_core(tmp_path):
    model = Ensemble()
    runner = ensemble_runner(tmp_path, model)
    expected = {}
    for i, name in enumerate(NAMES):
        lrs = [0.1 if it < i % 3 + 1 else 0.01 for it in range(STEPS)]
        expected[name], _ = core_run(model.nets[name], name, STEPS, lrs=lrs)
    runner.train()
    assert isinstance(runner.optim_wrapper, OptimWrapperDict)
    assert runner.optim_wrapper.get_lr() == {f"{name}.lr": [pytest.approx(0.01)] for name in NAMES}
    assert runner.optim_wrapper.get_momentum() == {f"{n}.momentum": [0.9] for n in NAMES}
    for name in NAMES:
        assert_same_weights(runner.model.nets[name], expected[name])
        wrapper = runner.optim_wrapper[name]
        assert wrapper.optimizer.iteration == wrapper.optimizer.total_steps == STEPS
        assert wrapper.message_hub is runner.message_hub  # the statistics reach the log
    assert len(runner.message_hub.log_scalars["train/sampled"].data[0]) == len(NAMES) * STEPS
    state = runner.optim_wrapper.state_dict()
    assert list(state) == NAMES
    for name in NAMES:
        assert_equal_states(state[name], runner.optim_wrapper[name].state_dict())


# ----------------------------------------------------------------------- checkpoints, resume
def interrupted(build, work_dir, n, by_epoch):
    """The run of ``build(work_dir, **kwargs)`` killed after its checkpoint at ``n``, then
    resumed to its end; returns the resumed Runner."""
    first = build(work_dir, custom_hooks=[KillAt(epochs=n) if by_epoch else KillAt(iters=n)])
    with pytest.raises(Killed):
        first.train()
    resumed = build(work_dir, resume=True)
    resumed.train()
    return resumed


def assert_same_runs(a, b):
    assert_same_weights(a.model, b.model, rtol=0, atol=0)
    assert_equal_states(a.optim_wrapper.state_dict(), b.optim_wrapper.state_dict())
    assert a.iter == b.iter == STEPS
    if not isinstance(a.optim_wrapper, OptimWrapperDict):  # whose initialize_count_status
        assert a.optim_wrapper.inner_count == b.optim_wrapper.inner_count == STEPS  # is a no-op


@pytest.mark.parametrize("name", NAMES)
def test_an_epoch_based_run_resumes_exactly(tmp_path, name):
    """CheckpointHook by epoch, resumed: the run ends as the uninterrupted one, bit for bit
    (weights, the wrappers' full state, the loss scaler's too). tests/test_mm_resume.py: by
    iteration."""
    model = make_model()
    train_cfg, schedulers, _, _ = SCHEDULES["by-epoch"]

    def build(work_dir, **kwargs):
        return epoch_runner(work_dir, copy.deepcopy(model), wrapper_cfg(
            name, loss_scale="dynamic"), train_cfg, param_scheduler=schedulers,
            runner_class=ArsamRunner, default_hooks=dict(checkpoint=dict(
                type="CheckpointHook", interval=1, by_epoch=True)), **kwargs)
    whole = build(tmp_path / "whole")
    whole.train()
    assert_same_runs(whole, interrupted(build, tmp_path / "parts", 1, by_epoch=True))


def test_an_optim_wrapper_dict_resumes_exactly(tmp_path):
    model = Ensemble()

    def build(work_dir, **kwargs):
        return ensemble_runner(work_dir, copy.deepcopy(model), default_hooks=dict(
            checkpoint=dict(type="CheckpointHook", interval=2, by_epoch=False)), **kwargs)
    whole = build(tmp_path / "whole")
    whole.train()
    assert_same_runs(whole, interrupted(build, tmp_path / "parts", 2, by_epoch=False))
