"""The registered mmengine optim wrappers through mmengine's Runner, against the core alone."""
import glob
import json
import os

import pytest
import torch
import torch.nn.functional as F
from mm_tiny import (BATCH, PerSampleClassifier, TinyClassifier, TinyData, assert_same_weights,
                     labels, make_model, make_runner, optim_cfg, reference)
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper
from mmengine.registry import OPTIM_WRAPPERS
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import arsam
from arsam.mmlab.per_sample import register_per_sample_loss
from arsam.mmlab import wrappers
from arsam.mmlab.wrappers import SharpnessAwareOptimWrapper, take

STEPS = 4
# ARSAM: warm-up of 1 step, then sampling: the paper's schedule (windows of 2), ours, every 2nd step
VSAM_SCHEDULE = dict(schedule="vsam", start_iter=1, window=2, slices=1)
SCHEDULE = dict(schedule="fixed", rate=0.5, start_iter=1)
CASES = [  # wrapper core, its arguments, the model class (the protocol only where needed)
    ("SAM", dict(rho=0.05), TinyClassifier),
    ("ESAM", dict(rho=0.05, beta=0.6, gamma=0.5), PerSampleClassifier),
    ("ESAM", dict(rho=0.05, beta=0.5, gamma=1.0), TinyClassifier),
    ("KSAM", dict(rho=0.05, k1=0.25, k2=0.5), PerSampleClassifier),
    ("PeriodicSAM", dict(rho=0.05, k=2), TinyClassifier),
    ("VSAM", dict(rho=0.05, **VSAM_SCHEDULE), TinyClassifier),
    ("ARSAM", dict(rho=0.05, start_iter=1), TinyClassifier),
    ("ARSAM", dict(rho=0.05, gamma=0.7, **SCHEDULE), TinyClassifier),
    ("LookSAM", dict(rho=0.05, k=2), TinyClassifier),
]


def test_every_core_is_registered_in_the_root_registry():
    for name, core in arsam.OPTIMIZERS.items():
        wrapper = OPTIM_WRAPPERS.get(f"{name}OptimWrapper")
        assert issubclass(wrapper, SharpnessAwareOptimWrapper) and wrapper.core_class is core
    assert OPTIM_WRAPPERS.scope == "mmengine"


def test_build_passes_extra_keys_to_the_core_and_shares_param_groups():
    model = make_model(TinyClassifier)
    cfg = optim_cfg("ARSAMOptimWrapper", rho=0.07, schedule="vsam", alpha=0.2, gamma=0.5,
                    paramwise_cfg=dict(custom_keys={"fc": dict(lr_mult=0.5)}))
    wrapper = build_optim_wrapper(model, cfg)
    core = wrapper.optimizer
    assert isinstance(core, arsam.ARSAM) and isinstance(core.base_optimizer, torch.optim.SGD)
    assert (core.schedule.gamma, core.schedule.alpha, core.param_groups[0]["rho"]) == (
        0.5, 0.2, 0.07)
    assert core.param_groups is core.base_optimizer.param_groups
    fc = {id(p) for p in model.fc.parameters()}
    assert sorted((g["lr"], id(g["params"][0]) in fc) for g in wrapper.param_groups[:-1]) == [
        (0.05, True), (0.05, True), (0.1, False), (0.1, False), (0.1, False), (0.1, False)]


@pytest.mark.parametrize("kwargs, message", [
    (dict(accumulative_counts=0), r"accumulative_counts must be an int >= 1, got 0"),
    (dict(dtype="float8"), r"dtype must be None or an autocast dtype, one of \('float16', "
                           r"'bfloat16'\) \(str or torch.dtype\), got 'float8'"),
    (dict(dtype=torch.float32, loss_scale="dynamic"), r"dtype must be None or an autocast "
                                                      r"dtype, .* got torch.float32"),
    (dict(dtype="float16"), r"loss_scale must be given with dtype='float16' \(float16 "
                            r"gradients underflow unscaled; AmpOptimWrapper's default is "
                            r"'dynamic'\), got None"),
    (dict(dtype="float16", loss_scale="dynamic"), r"dtype must be None or 'bfloat16' on CPU "
                                                  r"\(mmengine's CPU autocast\), got 'float16'"),
    (dict(loss_scale=-1.0), r"loss_scale must be None, 'dynamic', a number > 0 or a dict of "
                            r"GradScaler arguments, got -1.0"),
    (dict(sync_ascent="yes"), r"sync_ascent must be a bool, got 'yes'"),
    (dict(rho=-1), r"rho must be a number >= 0, got -1"),
])
def test_bad_arguments_fail_at_build(monkeypatch, kwargs, message):
    monkeypatch.setattr(wrappers, "get_device", lambda: "cpu")  # the CPU rule, on any machine
    with pytest.raises(ValueError, match=message):
        build_optim_wrapper(make_model(TinyClassifier), optim_cfg("SAMOptimWrapper", **kwargs))


@pytest.mark.parametrize("name, kwargs, model_class", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_runner_steps_equal_core_steps(tmp_path, name, kwargs, model_class):
    model = make_model(model_class)
    expected, stats = reference(model, getattr(arsam, name), STEPS, **kwargs)
    runner = make_runner(tmp_path, model, optim_cfg(f"{name}OptimWrapper", **kwargs),
                         max_iters=STEPS)
    runner.train()
    assert_same_weights(runner.model, expected)  # BatchNorm running statistics included
    assert runner.model.bn.num_batches_tracked.item() == STEPS  # updated by one pass per step
    assert runner.optim_wrapper.inner_count == STEPS  # one backward count per iteration
    assert runner.optim_wrapper.optimizer.iteration == STEPS
    if name in ("ESAM", "KSAM") and model_class is PerSampleClassifier:
        assert runner.optim_wrapper.optimizer.stats == stats[-1]
    else:  # scalar losses: the core cannot count samples
        assert runner.optim_wrapper.optimizer.stats == dict(
            stats[-1], forward_samples=None, backward_samples=None)


class RecordSampled(Hook):
    def __init__(self):
        self.sampled = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.sampled.append(runner.optim_wrapper.optimizer.stats["sampled"])


@pytest.mark.parametrize("name, kwargs, model_class, passes", [
    ("SAM", {}, TinyClassifier, 1),                  # + the perturbed pass
    ("ARSAM", SCHEDULE, TinyClassifier, 1),          # + the perturbed pass on sampled steps
    ("KSAM", {}, PerSampleClassifier, 3),            # ranking forward + K1 and K2 passes
    ("ESAM", dict(beta=1.0, gamma=0.5), PerSampleClassifier, 3),  # + SDS forward, B+ pass
    ("ESAM", dict(beta=0.5, gamma=0.5), PerSampleClassifier, 3),  # SWP mask drawn before it
])
def test_first_pass_is_the_forward_train_step_ran(tmp_path, name, kwargs, model_class, passes):
    """Forwards per step: the core's passes, train_step's forward being the first one."""
    model = make_model(model_class)
    runner = make_runner(tmp_path, model, optim_cfg(f"{name}OptimWrapper", **kwargs),
                         max_iters=STEPS)
    record = RecordSampled()
    runner.register_hook(record)
    runner.train()
    sam_passes = sum(record.sampled) if name in ("SAM", "ARSAM") else 0
    assert len(model.autocast_log) == passes * STEPS + sam_passes
    if name == "ARSAM":
        assert 0 < sum(record.sampled) < STEPS


def test_param_schedulers_reach_the_base_optimizer(tmp_path):
    model = make_model(TinyClassifier)

    def decay(opt, it):
        if it == 2:
            for group in opt.param_groups:
                group["lr"] *= 0.1
                group["momentum"] *= 0.5
    expected, _ = reference(model, arsam.SAM, STEPS, between=decay)
    runner = make_runner(tmp_path, model, optim_cfg("SAMOptimWrapper"), max_iters=STEPS,
                         param_scheduler=[
                             dict(type="MultiStepLR", milestones=[2], gamma=0.1, by_epoch=False),
                             dict(type="MultiStepMomentum", milestones=[2], gamma=0.5,
                                  by_epoch=False)])
    runner.train()
    group = runner.optim_wrapper.optimizer.base_optimizer.param_groups[0]
    assert (group["lr"], group["momentum"]) == pytest.approx((0.01, 0.45))
    assert_same_weights(runner.model, expected)


@pytest.mark.parametrize("loss_scale", [None, 1024.0])
def test_clip_grad_clips_the_unscaled_update_gradient(tmp_path, loss_scale):
    model = make_model(TinyClassifier)
    amp = None if loss_scale is None else torch.bfloat16  # loss_scale implies autocast (CPU)
    expected, _ = reference(model, arsam.SAM, STEPS, clip=0.05, amp_dtype=amp)
    unclipped, _ = reference(model, arsam.SAM, STEPS, amp_dtype=amp)
    runner = make_runner(tmp_path, model, optim_cfg("SAMOptimWrapper", loss_scale=loss_scale,
                                                    clip_grad=dict(max_norm=0.05)),
                         max_iters=STEPS)
    runner.train()
    assert_same_weights(runner.model, expected)
    assert runner.message_hub.get_scalar("train/grad_norm").current() > 0.05  # it did clip
    with pytest.raises(AssertionError):
        assert_same_weights(runner.model, unclipped)


@pytest.mark.parametrize("loss_scale, scale", [
    ("dynamic", 2.0 ** 16), (256.0, 256.0), (dict(init_scale=2.0 ** 12), 2.0 ** 12)])
def test_loss_scaling_leaves_the_steps_unchanged(tmp_path, loss_scale, scale):
    """loss_scale alone autocasts in the device's AMP dtype (bf16 on CPU), as AmpOptimWrapper."""
    model = make_model(TinyClassifier)
    expected, _ = reference(model, arsam.ARSAM, STEPS, amp_dtype=torch.bfloat16, **SCHEDULE)
    runner = make_runner(tmp_path, model, optim_cfg("ARSAMOptimWrapper", loss_scale=loss_scale,
                                                    **SCHEDULE), max_iters=STEPS)
    runner.train()
    assert model.autocast_log == [True] * len(model.autocast_log)
    assert_same_weights(runner.model, expected)  # power-of-two scales: exact
    assert runner.optim_wrapper.state_dict()["loss_scaler"]["scale"] == scale


def test_bf16_autocast_covers_every_pass(tmp_path):
    model = make_model(TinyClassifier)
    expected, _ = reference(model, arsam.SAM, STEPS, amp_dtype=torch.bfloat16)
    runner = make_runner(tmp_path, model, optim_cfg("SAMOptimWrapper", dtype="bfloat16"),
                         max_iters=STEPS)
    runner.train()
    assert model.autocast_log == [True] * (2 * STEPS)
    assert_same_weights(runner.model, expected)


@pytest.mark.parametrize("name, kwargs", [("ESAM", dict(gamma=0.5)), ("KSAM", {})])
def test_per_sample_cores_need_the_protocol_when_training_starts(tmp_path, name, kwargs):
    model = make_model(TinyClassifier)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    runner = make_runner(tmp_path, model, optim_cfg(f"{name}OptimWrapper", **kwargs))
    with pytest.raises(TypeError, match=(
            f"{name}OptimWrapper needs per-sample losses but TinyClassifier provides none: "
            r"give it a method loss_per_sample\(inputs, data_samples\) or register one with "
            "arsam.mmlab.per_sample.register_per_sample_loss")):
        runner.train()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


class RegisteredClassifier(TinyClassifier):
    """Per-sample losses given by a registered function, the class left unmodified."""


@register_per_sample_loss(RegisteredClassifier)
def _registered_loss(model, inputs, data_samples):
    return F.cross_entropy(model.logits(inputs), labels(data_samples), reduction="none")


def test_registered_per_sample_loss_drives_ksam(tmp_path):
    model = make_model(RegisteredClassifier)
    kwargs = dict(k1=2, k2=4)
    expected, stats = reference(model, arsam.KSAM, STEPS, **kwargs)
    runner = make_runner(tmp_path, model, optim_cfg("KSAMOptimWrapper", **kwargs),
                         max_iters=STEPS)
    runner.train()
    assert_same_weights(runner.model, expected)
    assert stats[-1]["backward_samples"] == 6 and stats[-1]["forward_samples"] == BATCH + 6


def test_stats_reach_the_log_and_every_visualizer_backend(tmp_path):
    model = make_model(TinyClassifier)
    _, stats = reference(model, arsam.ARSAM, STEPS, **SCHEDULE)
    runner = make_runner(tmp_path, model, optim_cfg("ARSAMOptimWrapper", **SCHEDULE),
                         max_iters=STEPS, visualizer=dict(
                             type="Visualizer", vis_backends=[dict(type="LocalVisBackend"),
                                                              dict(type="TensorboardVisBackend")]))
    runner.train()
    expected = {k: [float("nan" if s[k] is None else s[k]) for s in stats]
                for k in ("sampled", "sampling_rate", "psf_norm", "sgd_norm")}
    assert expected["sampled"] == [1.0, 0.0, 1.0, 0.0]  # sgd_norm: NaN at unsampled steps
    vis = os.path.join(runner.log_dir, "vis_data")
    rows = [json.loads(line) for line in open(glob.glob(os.path.join(vis, "*.json"))[0])]
    events = EventAccumulator(vis).Reload()
    log = open(glob.glob(os.path.join(runner.log_dir, "*.log"))[0]).read()
    for key, values in expected.items():
        torch.testing.assert_close([row[key] for row in rows], values, equal_nan=True)
        torch.testing.assert_close([e.value for e in events.Scalars(key)], values,
                                   equal_nan=True, check_dtype=False)
        for it, value in enumerate(values):
            assert f"Iter(train) [{it + 1}/{STEPS}]" in log
            assert f"  {key}: {value:.4f}  " in log.split(f"Iter(train) [{it + 1}/{STEPS}]")[1]


def test_backward_alone_is_refused_and_update_needs_a_recorded_forward():
    model = make_model(TinyClassifier)
    wrapper = build_optim_wrapper(model, optim_cfg("SAMOptimWrapper"))
    loss = model(torch.randn(2, 1, 6, 6)).sum()
    with pytest.raises(RuntimeError, match="SAMOptimWrapper runs every backward itself: call "
                                           r"update_params\(loss\) after the forward inside "
                                           r"optim_context\(model\)"):
        wrapper.backward(loss)
    with pytest.raises(RuntimeError, match=r"needs exactly one forward of the model inside "
                                           r"optim_context\(model\) .* got 0"):
        wrapper.update_params(loss)
    assert wrapper.optimizer.iteration == 0 and wrapper.inner_count == 0


def test_take_selects_samples_of_every_batch_container():
    idx = torch.tensor([2, 0])
    x = torch.arange(12).view(4, 3)
    assert torch.equal(take(x, idx), x[[2, 0]])
    assert take(["a", "b", "c", "d"], idx) == ["c", "a"]
    assert take(("a", "b", "c"), idx) == ("c", "a")
    out = take(dict(img=x, metas=["a", "b", "c", "d"]), idx)
    assert torch.equal(out["img"], x[[2, 0]]) and out["metas"] == ["c", "a"]
    assert take(None, idx) is None
    with pytest.raises(TypeError, match="cannot select samples of batch data of type str"):
        take("abcd", idx)


@pytest.mark.parametrize("train_cfg, expected", [
    (dict(by_epoch=False, max_iters=4), (4, 4)),         # an iteration-based loop: one "epoch"
    (dict(by_epoch=True, max_epochs=3), (6, 2)),         # 16 samples, batch 8: 2 steps an epoch
])
def test_the_wrapper_tells_the_core_the_run_length_before_the_first_step(tmp_path, train_cfg,
                                                                        expected):
    seen = []

    class Probe(Hook):
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            core = runner.optim_wrapper.optimizer
            seen.append((core.total_steps, core.steps_per_epoch))

    sampler = dict(type="InfiniteSampler" if not train_cfg["by_epoch"] else "DefaultSampler",
                   shuffle=False)
    runner = make_runner(tmp_path, make_model(TinyClassifier), optim_cfg("SAMOptimWrapper"),
                         custom_hooks=[Probe()], train_cfg=train_cfg,
                         train_dataloader=dict(dataset=TinyData(), batch_size=BATCH,
                                               num_workers=0, sampler=sampler,
                                               collate_fn=dict(type="default_collate")))
    runner.train()
    assert seen[0] == (None, None) and set(seen[1:]) == {expected}


def test_a_run_length_the_user_gave_is_kept(tmp_path):
    runner = make_runner(tmp_path, make_model(TinyClassifier),
                         optim_cfg("SAMOptimWrapper", total_steps=100, steps_per_epoch=7))
    runner.train()
    core = runner.optim_wrapper.optimizer
    assert (core.total_steps, core.steps_per_epoch) == (100, 7)
