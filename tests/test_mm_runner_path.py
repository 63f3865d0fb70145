"""The Runner path costs what the core path costs: the same passes (counted by hooks), ESAM's
SWP mask drawn before train_step's forward, no graph for passes without backward; AMP as
mmengine's AmpOptimWrapper; models whose forward names its batch differently; auto_scale_lr."""
import pytest
import torch
import torch.nn.functional as F
from mm_tiny import (BATCH, PerSampleClassifier, TinyClassifier, TinyData, assert_same_weights,
                     make_model, make_runner, optim_cfg, reference)
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper
from mmengine.optim.optimizer import amp_optimizer_wrapper
from torch.utils.data import Dataset

import arsam

STEPS = 6
SCHEDULE = dict(schedule="fixed", rate=0.5, start_iter=1)  # a warm-up step, every 2nd step
VSAM_SCHEDULE = dict(schedule="vsam", start_iter=1, window=2, slices=1)
F8, F8_NO_GRAD, B8 = ("F", 8, True), ("F", 8, False), ("B", 8)
SAM_STEP = [F8, B8, F8, B8]
# per wrapper: its arguments, the model class, the passes of each of the 6 steps, written out
# by hand: ("F", samples, grad enabled) for a forward, ("B", samples) for a backward
PASSES = {
    "SAM": (dict(), TinyClassifier, [SAM_STEP] * 6),
    # SWP ascent on the batch, SDS forward at w+ε without graph, update on B+ (γ·8 = 4)
    "ESAM": (dict(beta=0.5, gamma=0.5), PerSampleClassifier,
             [[F8, B8, F8_NO_GRAD, ("F", 4, True), ("B", 4)]] * 6),
    # ranking forward without graph, K1 = 2 and K2 = 4 samples
    "KSAM": (dict(k1=0.25, k2=0.5), PerSampleClassifier,
             [[F8_NO_GRAD, ("F", 2, True), ("B", 2), ("F", 4, True), ("B", 4)]] * 6),
    "PeriodicSAM": (dict(k=2), TinyClassifier, [SAM_STEP, [F8, B8]] * 3),
    # the paper's schedule at these settings (a warm-up step, then windows of 2 steps taking
    # one sample each: the draws of seed 0 miss, then fill, miss, fill, hit)
    "VSAM": (VSAM_SCHEDULE, TinyClassifier, [SAM_STEP, [F8, B8], SAM_STEP, [F8, B8], SAM_STEP,
                                             SAM_STEP]),
    "ARSAM": (dict(gamma=0.7, **SCHEDULE), TinyClassifier, [SAM_STEP, [F8, B8]] * 3),
}


def count_passes(model, log):
    """Log each forward (samples, grad enabled) at the first layer and each backward (samples)
    reaching the last one."""
    model.conv.register_forward_pre_hook(
        lambda module, args: log.append(("F", len(args[0]), torch.is_grad_enabled())))
    model.fc.register_full_backward_pre_hook(
        lambda module, grad_output: log.append(("B", len(grad_output[0]))))


@pytest.mark.parametrize("name", sorted(PASSES))
def test_pass_counts_through_the_runner_equal_the_cores(tmp_path, name):
    kwargs, model_class, steps = PASSES[name]
    model = make_model(model_class)
    core_log, runner_log = [], []
    expected, stats = reference(model, getattr(arsam, name), STEPS,
                                on_copy=lambda m: count_passes(m, core_log), **kwargs)
    assert [len(step) > 2 for step in steps] == [s["sampled"] for s in stats]
    count_passes(model, runner_log)
    runner = make_runner(tmp_path, model, optim_cfg(f"{name}OptimWrapper", **kwargs),
                         max_iters=STEPS)
    runner.train()
    assert core_log == [p for step in steps for p in step]
    assert runner_log == core_log
    assert_same_weights(runner.model, expected)


class WeightsAfterEachStep(Hook):
    def __init__(self):
        self.weights = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.weights.append({k: v.clone() for k, v in runner.model.state_dict().items()})


@pytest.mark.parametrize("kwargs", [dict(beta=0.5, gamma=0.5), dict(beta=0.3, gamma=1.0)])
def test_esam_through_the_runner_equals_the_core_step_for_step(tmp_path, kwargs):
    model = make_model(PerSampleClassifier if kwargs["gamma"] < 1 else TinyClassifier)
    record = WeightsAfterEachStep()
    runner = make_runner(tmp_path, model, optim_cfg("ESAMOptimWrapper", **kwargs),
                         max_iters=STEPS, custom_hooks=[record])
    runner.train()
    for step, weights in enumerate(record.weights, 1):
        expected, _ = reference(make_model(type(model)), arsam.ESAM, step, **kwargs)
        for key, value in expected.state_dict().items():
            torch.testing.assert_close(weights[key], value, msg=lambda m: f"{step} {key}: {m}")
    core = runner.optim_wrapper.optimizer
    assert core._swp_mask is None and all(p.requires_grad for p in model.parameters())


def test_a_failing_forward_gives_the_drawn_mask_back(tmp_path):
    """train_step's forward raises after the wrapper drew ESAM's mask: every parameter requires
    grad again and the generator is where it was, so the next step draws the same mask."""
    model = make_model(PerSampleClassifier)
    wrapper = build_optim_wrapper(model, optim_cfg("ESAMOptimWrapper", beta=0.5, gamma=0.5))
    core = wrapper.optimizer
    state = core.generator.get_state()
    with pytest.raises(RuntimeError, match="broken forward"):
        with wrapper.optim_context(model):
            assert not all(p.requires_grad for p in model.parameters())  # the mask is drawn
            raise RuntimeError("broken forward")
    assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(core.generator.get_state(), state) and core._swp_mask is None


# ------------------------------------------------------------------------------------------ AMP
AMP_ARGS = [dict(loss_scale="dynamic"), dict(loss_scale=512.0),
            dict(loss_scale=dict(init_scale=2.0 ** 10)), dict(dtype="bfloat16"),
            dict(dtype="bfloat16", loss_scale="dynamic"), dict(dtype=torch.bfloat16,
                                                               loss_scale=256.0)]


def autocast_state(wrapper, model):
    with wrapper.optim_context(model):
        return torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")


@pytest.mark.parametrize("kwargs", AMP_ARGS, ids=[str(k) for k in AMP_ARGS])
def test_autocast_is_on_exactly_when_amp_optim_wrapper_turns_it_on(monkeypatch, kwargs):
    # AmpOptimWrapper refuses to be built without a GPU; its autocast is mmengine's on any device
    monkeypatch.setattr(amp_optimizer_wrapper, "is_cuda_available", lambda: True)
    model = make_model(PerSampleClassifier)
    amp = build_optim_wrapper(model, optim_cfg("AmpOptimWrapper", **kwargs))
    expected = autocast_state(amp, model)
    assert expected == (True, torch.bfloat16)  # CPU: bf16 whether or not dtype is given
    for name in arsam.OPTIMIZERS:
        ours = build_optim_wrapper(model, optim_cfg(f"{name}OptimWrapper", **kwargs))
        assert ours.amp and autocast_state(ours, model) == expected
        assert (ours.loss_scaler is not None) == ("loss_scale" in kwargs)


def test_without_amp_arguments_a_wrapper_is_full_precision_as_optim_wrapper():
    model = make_model(TinyClassifier)
    plain = autocast_state(build_optim_wrapper(model, optim_cfg("OptimWrapper")), model)
    ours = build_optim_wrapper(model, optim_cfg("SAMOptimWrapper"))
    assert plain == autocast_state(ours, model) and plain[0] is False and not ours.amp


# ------------------------------------------------------------------ the model's forward signature
class LabelsClassifier(PerSampleClassifier):
    """forward(inputs, labels, mode): the batch's second entry named otherwise (mmengine allows
    it: train_step calls forward(**data, mode='loss'))."""

    def forward(self, inputs, labels=None, mode="tensor"):
        return super().forward(inputs, labels, mode)


class LabelsData(Dataset):
    def __init__(self):
        self.data = TinyData()

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        item = self.data[i]
        return dict(inputs=item["inputs"], labels=item["data_samples"])


@pytest.mark.parametrize("name, kwargs", [("ESAM", dict(beta=0.5, gamma=0.5)),
                                          ("KSAM", dict(k1=0.25, k2=0.5))])
def test_a_forward_naming_its_batch_otherwise_trains_as_the_core(tmp_path, name, kwargs):
    model = make_model(LabelsClassifier)
    expected, _ = reference(model, getattr(arsam, name), STEPS, **kwargs)
    runner = make_runner(tmp_path, model, optim_cfg(f"{name}OptimWrapper", **kwargs),
                         max_iters=STEPS, data=LabelsData())
    runner.train()
    assert_same_weights(runner.model, expected)


class NoModeClassifier(PerSampleClassifier):
    def forward(self, inputs, data_samples=None):
        return {"loss": F.cross_entropy(self.logits(inputs), data_samples)}


def test_a_forward_without_mode_is_refused_before_any_pass():
    model = make_model(NoModeClassifier)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wrapper = build_optim_wrapper(model, optim_cfg("KSAMOptimWrapper"))
    with pytest.raises(TypeError, match=(
            r"KSAMOptimWrapper needs NoModeClassifier.forward to take the batch as its first two "
            r"parameters and a 'mode' argument \(mmengine's forward\(inputs, data_samples, "
            r"mode\)\), got forward\(inputs, data_samples=None\)")):
        with wrapper.optim_context(model):
            pass
    assert model.autocast_log == [] and wrapper.optimizer.iteration == 0
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


# ------------------------------------------------------------------------------ auto_scale_lr
@pytest.mark.parametrize("name", ["SAM", "ESAM", "ARSAM"])
def test_auto_scale_lr_scales_the_base_optimizers_lr(tmp_path, name):
    """The Runner's linear scaling rule (batch 8 for a base of 4: lr x2) reaches the base
    optimizer and the steps equal the core's at the scaled lr."""
    kwargs = dict(ESAM=dict(beta=0.5, gamma=1.0), ARSAM=SCHEDULE).get(name, {})
    model = make_model(TinyClassifier)
    expected, _ = reference(model, getattr(arsam, name), STEPS, lr=0.2, **kwargs)
    runner = make_runner(tmp_path, model, optim_cfg(f"{name}OptimWrapper", lr=0.1, **kwargs),
                         max_iters=STEPS,
                         auto_scale_lr=dict(enable=True, base_batch_size=BATCH // 2))
    runner.train()
    assert [g["lr"] for g in runner.optim_wrapper.optimizer.base_optimizer.param_groups] == [0.2]
    assert_same_weights(runner.model, expected)
