"""Bad configuration fails when the Runner starts training, before any iteration, naming the
argument: wrapper and core arguments, param groups, and K-SAM's K against the smallest batch."""
import copy

import pytest
import torch
from mm_tiny import PerSampleClassifier, TinyData, make_model, make_runner, optim_cfg
from mmengine.hooks import Hook
from mmengine.runner import Runner

from arsam.mmlab.runner import ArsamRunner, smallest_batch


class CountIterations(Hook):
    def __init__(self):
        self.iterations = 0

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.iterations += 1


def start(tmp_path, wrapper_cfg, runner_class=Runner, epochs=None, drop_last=False, hooks=()):
    """Train the tiny per-sample classifier on 20 samples in batches of 8; returns the runner,
    the iteration counter and the initial weights. ``epochs``: an epoch-based run whose last
    batch per epoch has 4 samples (else iteration-based: every batch is full)."""
    model = make_model(PerSampleClassifier)
    initial = copy.deepcopy(model.state_dict())
    counter = CountIterations()
    kwargs = {}
    if epochs is not None:
        kwargs = dict(train_cfg=dict(by_epoch=True, max_epochs=epochs),
                      train_dataloader=dict(dataset=TinyData(20), batch_size=8, num_workers=0,
                                            sampler=dict(type="DefaultSampler", shuffle=False),
                                            collate_fn=dict(type="default_collate"),
                                            drop_last=drop_last))
    runner = make_runner(tmp_path, model, wrapper_cfg, max_iters=2, runner_class=runner_class,
                         custom_hooks=[counter, *hooks], **kwargs)
    return runner, counter, initial


def assert_nothing_trained(runner, counter, initial):
    assert counter.iterations == 0
    for key, value in initial.items():
        torch.testing.assert_close(runner.model.state_dict()[key], value, rtol=0, atol=0,
                                   msg=key)


@pytest.mark.parametrize("wrapper, kwargs, error, message", [
    ("SAM", dict(rho="0.05"), ValueError, r"^rho must be a number >= 0, got '0.05'$"),
    ("SAM", dict(adaptive="yes"), ValueError, r"^adaptive must be a bool, got 'yes'$"),
    ("SAM", dict(skip_nonfinite="no"), ValueError, r"^skip_nonfinite must be a bool, got 'no'$"),
    ("SAM", dict(seed=0.5), ValueError, r"^seed must be an int, got 0.5$"),
    ("SAM", dict(clip_grad=dict(max_norm=-1.0)), ValueError,
     r"^clip_grad must be None, dict\(max_norm=<number > 0>, \.\.\.\) or "
     r"dict\(type='value', clip_value=<number > 0>\), got \{'max_norm': -1.0\}$"),
    ("SAM", dict(clip_grad=dict(type="value", clip_value="1")), ValueError,
     r"^clip_grad must be None, .*, got \{'type': 'value', 'clip_value': '1'\}$"),
    ("SAM", dict(clip_grad=1.0), ValueError, r"^clip_grad must be None, .*, got 1.0$"),
    ("VSAM", dict(rh0=0.1), TypeError,
     r"^ARSAM got unexpected arguments \['rh0'\] \(arguments of the built base optimizer are set "
     r"when building it\)$"),
    ("ARSAM", dict(schedule="linear"), ValueError,
     r"^schedule must be one of \['fixed', 'matched', 'vsam'\] or a schedule object, got 'linear'$"),
    ("ARSAM", dict(alpha=0.1), TypeError,
     r"^alpha is an argument of schedule 'vsam', not of 'matched' \(its arguments: kappa, "),
    ("VSAM", dict(schedule="vsam", window=1), ValueError, r"^window must be an int >= 2, got 1$"),
    ("KSAM", dict(k1=0), ValueError, r"^k1 must be an int >= 1 \(samples\) or a float in \(0, 1\]"),
    ("ESAM", dict(gamma=1.5), ValueError, r"^gamma must be in \[0, 1\], got 1.5$"),
    ("ARSAM", dict(optimizer=dict(type="Adadelta", lr=1.0)), ValueError,
     r"^base_optimizer Adadelta has a setting of its own named 'rho' \(default 0.9\), the "
     r"param-group key that holds the ascent radius of ARSAM: each would read the other's value; "
     r"use another base optimizer$"),
    ("SAM", dict(paramwise_cfg=dict(custom_keys={"fc": dict(rho="0")})), ValueError,
     r"^param_groups\[\d\]\['rho'\] must be a number >= 0, got '0'$"),
])
def test_bad_arguments_fail_before_the_first_iteration(tmp_path, wrapper, kwargs, error,
                                                       message):
    cfg = optim_cfg(f"{wrapper}OptimWrapper")
    cfg.update(kwargs)
    runner, counter, initial = start(tmp_path, cfg)
    with pytest.raises(error, match=message):
        runner.train()
    assert_nothing_trained(runner, counter, initial)


LAST_BATCH = (r"^KSAMOptimWrapper: k2 must be at most the batch size \(4\), got 6; "
              r"train_dataloader's smallest batch has 4 samples on this rank \(the last of an "
              r"epoch: 20 samples in batches of 8; drop_last=True drops it\)$")


@pytest.mark.parametrize("runner_class, hooks", [
    (ArsamRunner, ()), (Runner, [dict(type="CheckBatchSizeHook")])],
    ids=["ArsamRunner", "Runner-with-the-hook"])
def test_a_k_larger_than_the_last_batch_fails_before_training(tmp_path, runner_class, hooks):
    runner, counter, initial = start(tmp_path, optim_cfg("KSAMOptimWrapper", k1=2, k2=6),
                                     runner_class, epochs=2, hooks=hooks)
    with pytest.raises(ValueError, match=LAST_BATCH):
        runner.train()
    assert_nothing_trained(runner, counter, initial)


def test_without_the_check_it_fails_at_the_end_of_the_first_epoch(tmp_path):
    """The premise: the core alone notices at the last batch, after two iterations of work."""
    runner, counter, _ = start(tmp_path, optim_cfg("KSAMOptimWrapper", k1=2, k2=6), epochs=2)
    with pytest.raises(ValueError, match=r"^k2 must be at most the batch size \(4\), got 6$"):
        runner.train()
    assert counter.iterations == 2


@pytest.mark.parametrize("kwargs", [dict(epochs=1, drop_last=True), dict()],
                         ids=["drop_last", "infinite-sampler"])
def test_full_batches_pass_the_check(tmp_path, kwargs):
    runner, counter, _ = start(tmp_path, optim_cfg("KSAMOptimWrapper", k1=2, k2=6), ArsamRunner,
                               **kwargs)
    runner.train()
    assert counter.iterations == 2


def test_smallest_batch_of_dataloaders():
    data = TinyData(20)
    loader = torch.utils.data.DataLoader
    assert smallest_batch(loader(data, batch_size=8)) == 4
    assert smallest_batch(loader(data, batch_size=8, drop_last=True)) == 8
    assert smallest_batch(loader(data, batch_size=5)) == 5
    assert smallest_batch(loader(data, batch_size=32)) == 20
    assert smallest_batch(loader(data, batch_size=None)) is None
