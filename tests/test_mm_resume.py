"""Checkpoint save and resume through the Runner: a resumed run ends as an uninterrupted one.

The Runner is ArsamRunner (arsam-train's): the checkpoint is loaded weights-only."""
import os

import numpy as np
import pytest
import torch
from mm_tiny import KillAt, Killed, PerSampleClassifier, make_model, make_runner, optim_cfg

from arsam.mmlab.runner import ArsamRunner

STEPS, STOP = 6, 3
CASES = {  # the wrapper and its arguments
    "SAM": ("SAM", dict(adaptive=True)),                                    # ASAM
    "ESAM": ("ESAM", dict(beta=0.5, gamma=0.5)),                            # SWP draws, SDS
    "KSAM": ("KSAM", dict(k1=0.25, k2=0.5)),                                # top-k selection
    "PeriodicSAM": ("PeriodicSAM", dict(k=2)),                              # step counter
    "LookSAM": ("LookSAM", dict(k=2)),                                      # stored g_v
    "MSAM": ("MSAM", {}),                                                   # momentum
    "ARSAM-vsam": ("ARSAM", dict(schedule="vsam", start_iter=1, window=2,   # PSF, schedule, RNG,
                                 slices=1, loss_scale="dynamic")),          # loss scaler
    "ARSAM-matched": ("ARSAM", dict(start_iter=1)),                         # PSF, schedule
}


def run(work_dir, name, resume=False, stop=None):
    runner = make_runner(
        work_dir, make_model(PerSampleClassifier),
        optim_cfg(f"{CASES[name][0]}OptimWrapper", **CASES[name][1]),
        max_iters=STEPS, resume=resume, custom_hooks=[KillAt(iters=stop)] if stop else None,
        runner_class=ArsamRunner,
        param_scheduler=dict(type="MultiStepLR", milestones=[4], gamma=0.1, by_epoch=False),
        default_hooks=dict(logger=dict(type="LoggerHook", interval=1),
                           checkpoint=dict(type="CheckpointHook", interval=STOP, by_epoch=False)))
    if stop:
        with pytest.raises(Killed):
            runner.train()
    else:
        runner.train()
    return runner


@pytest.mark.parametrize("name", sorted(CASES))
def test_resumed_run_ends_with_the_uninterrupted_weights(tmp_path, name):
    whole = run(tmp_path / "whole", name)
    first = run(tmp_path / "parts", name, stop=STOP)
    assert os.listdir(tmp_path / "parts").count(f"iter_{STOP}.pth") == 1 and first.iter == STOP - 1
    resumed = run(tmp_path / "parts", name, resume=True)  # finds iter_3.pth
    assert resumed.iter == STEPS
    for (key, a), b in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=lambda m: f"{key}: {m}")
    core_a, core_b = whole.optim_wrapper.optimizer, resumed.optim_wrapper.optimizer
    assert core_b.iteration == core_a.iteration == STEPS and core_b.stats == core_a.stats
    assert torch.equal(core_b.generator.get_state(), core_a.generator.get_state())
    assert core_b.param_groups[0]["lr"] == pytest.approx(0.01)
    assert core_b.skipped_steps == core_a.skipped_steps == 0
    for key in ("train/loss", "train/lr"):  # the message hub's history came back, bit for bit
        a, b = (r.message_hub.log_scalars[key].data for r in (whole, resumed))
        assert len(a[0]) == STEPS and all(np.array_equal(x, y) for x, y in zip(a, b)), key
    changed = [not torch.equal(a, b) for a, b in zip(
        first.model.state_dict().values(), whole.model.state_dict().values())]
    assert any(changed)  # the steps after the checkpoint did move the weights
