"""accumulative_counts through mmengine's Runner: equal to the core's accumulate() on the same
micro-batches, which equals DDP with per-replica ascent (test_core_accumulate.py); under DDP
(mm_accum_worker.py, 2 gloo processes) one all-reduce of the update gradient per step."""
import copy
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from mm_accum_worker import CASES as DDP_CASES
from mm_accum_worker import COUNTS, ITERS
from mm_tiny import BATCH, KillAt, Killed, PerSampleClassifier, TinyClassifier, TinyData, \
    assert_same_weights, make_model, make_runner, optim_cfg
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper

import arsam
from arsam.mmlab.runner import ArsamRunner

TIGHT = dict(rtol=1e-6, atol=1e-6)
HERE = os.path.dirname(os.path.abspath(__file__))
CASES = {  # the model class (the per-sample protocol where needed), the core's arguments
    "SAM": (TinyClassifier, {}),
    "ESAM": (PerSampleClassifier, dict(beta=0.5, gamma=0.5)),
    "KSAM": (PerSampleClassifier, dict(k1=0.25, k2=0.5)),
    "ARSAM": (TinyClassifier, dict(schedule="fixed", rate=0.5, gamma=0.7, start_iter=1)),
    "VSAM": (TinyClassifier, dict(schedule="vsam", start_iter=1, window=2, slices=1,
                                  quota=False)),
}


def accumulated(model, name, groups, clip=None, amp_dtype=None, **kwargs):
    """A copy of ``model`` trained by the core alone, one step per group of micro-batches
    (``clip``: the mean update gradient's max norm; ``amp_dtype``: autocast)."""
    model = copy.deepcopy(model).train()
    opt = getattr(arsam, name)(model.parameters(), base_optimizer=torch.optim.SGD, lr=0.1,
                               momentum=0.9, weight_decay=5e-4, model=model, rho=0.05, **kwargs)

    def closure(x, y):
        def losses(indices=None):
            with torch.autocast("cpu", dtype=amp_dtype, enabled=amp_dtype is not None):
                return F.cross_entropy(model.logits(x if indices is None else x[indices]),
                                       y if indices is None else y[indices], reduction="none")
        return losses

    stats = []
    for group in groups:
        for x, y in group:
            opt.accumulate(closure(x, y))
        opt.compute_gradient()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.base_optimizer.step()
        stats.append(dict(opt.stats))
    return model, stats


class RecordUpdates(Hook):
    def __init__(self):
        self.weights, self.sampled = [], []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.weights.append(runner.model.fc.weight.detach().clone())
        self.sampled.append(runner.optim_wrapper.optimizer.stats.get("sampled"))


@pytest.mark.parametrize("name", list(CASES))
def test_runner_accumulation_equals_the_core_on_the_micro_batches(tmp_path, name):
    """7 iterations, 2 a step: steps after iterations 2, 4, 6 and the run's last one (a group
    of 1, averaged over itself as mmengine's loss factor does)."""
    model_class, kwargs = CASES[name]
    model, data, iters = make_model(model_class), TinyData(), 7
    batches = [data.batch(it) for it in range(iters)]
    expected, stats = accumulated(model, name, [batches[i:i + 2] for i in range(0, iters, 2)],
                                  **kwargs)
    record, init = RecordUpdates(), model.fc.weight.detach().clone()
    runner = make_runner(tmp_path, model, optim_cfg(f"{name}OptimWrapper", rho=0.05,
                                                    accumulative_counts=2, **kwargs),
                         max_iters=iters, custom_hooks=[record])
    runner.train()
    for (key, got), want in zip(runner.model.state_dict().items(), expected.state_dict().values()):
        torch.testing.assert_close(got, want, **TIGHT, msg=lambda m: f"{key}: {m}")
    assert runner.model.bn.num_batches_tracked.item() == iters  # each micro-batch's first pass
    core = runner.optim_wrapper.optimizer
    assert (core.iteration, core.total_steps, runner.optim_wrapper.inner_count) == (4, 4, iters)
    moved = [not torch.equal(a, b) for a, b in zip([init] + record.weights, record.weights)]
    assert moved == [False, True, False, True, False, True, True]  # should_update
    assert [s["sampled"] for s in stats] == [record.sampled[i] for i in (1, 3, 5, 6)]
    if name.startswith(("ARSAM", "VSAM")):
        assert not all(s["sampled"] for s in stats)  # reuse steps included


def test_loss_scale_and_clip_grad_act_on_the_mean_update_gradient(tmp_path):
    """bf16 autocast with a static loss scale (a power of two: exact) and clip_grad: the wrapper
    unscales and clips the micro-batches' mean update gradient once per step."""
    model, data, iters = make_model(TinyClassifier), TinyData(), 6
    kwargs = CASES["ARSAM"][1]
    batches = [data.batch(it) for it in range(iters)]
    groups = [batches[i:i + 2] for i in range(0, iters, 2)]
    expected, _ = accumulated(model, "ARSAM", groups, clip=0.05, amp_dtype=torch.bfloat16,
                              **kwargs)
    unclipped, _ = accumulated(model, "ARSAM", groups, amp_dtype=torch.bfloat16, **kwargs)
    runner = make_runner(tmp_path, model, optim_cfg(
        "ARSAMOptimWrapper", rho=0.05, accumulative_counts=2, loss_scale=256.0,
        clip_grad=dict(max_norm=0.05), **kwargs), max_iters=iters)
    runner.train()
    assert model.autocast_log == [True] * len(model.autocast_log)
    assert_same_weights(runner.model, expected)
    assert runner.message_hub.get_scalar("train/grad_norm").current() > 0.05  # it did clip
    with pytest.raises(AssertionError):
        assert_same_weights(runner.model, unclipped)
    assert runner.optim_wrapper.state_dict()["loss_scaler"]["scale"] == 256.0


@pytest.mark.parametrize("train_cfg, expected", [
    (dict(by_epoch=False, max_iters=7), (4, 1)),  # 16 samples, batch 8: an epoch is 1 step of 2
    (dict(by_epoch=True, max_epochs=3), (3, 1)),
])
def test_the_run_length_is_in_optimizer_steps(tmp_path, train_cfg, expected):
    runner = make_runner(tmp_path, make_model(TinyClassifier), optim_cfg(
        "SAMOptimWrapper", accumulative_counts=2), train_cfg=train_cfg, runner_class=ArsamRunner,
        train_dataloader=dict(dataset=TinyData(), batch_size=BATCH, num_workers=0,
                              sampler=dict(type="InfiniteSampler" if not train_cfg["by_epoch"]
                                           else "DefaultSampler", shuffle=False),
                              collate_fn=dict(type="default_collate")))
    runner.train()
    core = runner.optim_wrapper.optimizer
    assert (core.total_steps, core.steps_per_epoch) == expected


def test_a_group_resumed_mid_way_is_averaged_over_the_iterations_it_has(tmp_path):
    """Saved after iteration 3 of 6 (its micro-batch pending, which a checkpoint does not hold)
    and resumed: iteration 4 is a group of its own (mmengine's should_update), averaged over
    itself, then 5-6; the core on those groups is the same run."""
    kwargs = CASES["ARSAM"][1]
    data, cfg = TinyData(), optim_cfg("ARSAMOptimWrapper", rho=0.05, accumulative_counts=2,
                                      **kwargs)
    hooks = dict(logger=dict(type="LoggerHook", interval=1),
                 checkpoint=dict(type="CheckpointHook", interval=3, by_epoch=False))
    first = make_runner(tmp_path, make_model(TinyClassifier), cfg, max_iters=6,
                        default_hooks=hooks, custom_hooks=[KillAt(iters=3)],
                        runner_class=ArsamRunner)
    with pytest.raises(Killed):
        first.train()
    resumed = make_runner(tmp_path, make_model(TinyClassifier, seed=1), cfg, max_iters=6,
                          default_hooks=hooks, resume=True, runner_class=ArsamRunner)
    resumed.train()
    b = [data.batch(it) for it in range(6)]
    expected, _ = accumulated(make_model(TinyClassifier), "ARSAM", [b[0:2], b[3:4], b[4:6]],
                              **kwargs)
    lost = ("bn.running_mean", "bn.running_var", "bn.num_batches_tracked")  # iteration 3 ran
    for (key, got), want in zip(resumed.model.state_dict().items(),
                                expected.state_dict().values()):
        if key not in lost:
            torch.testing.assert_close(got, want, **TIGHT, msg=lambda m: f"{key}: {m}")
    assert resumed.optim_wrapper.optimizer.iteration == 3


@pytest.mark.parametrize("counts, message", [
    (0, r"accumulative_counts must be an int >= 1, got 0"),
    (1.5, r"accumulative_counts must be an int >= 1, got 1.5"),
    (True, r"accumulative_counts must be an int >= 1, got True"),
])
def test_bad_accumulative_counts_name_the_argument_and_range(counts, message):
    with pytest.raises(ValueError, match=message):
        build_optim_wrapper(make_model(TinyClassifier), optim_cfg(
            "SAMOptimWrapper", accumulative_counts=counts))


def test_looksam_takes_no_accumulation():
    with pytest.raises(ValueError, match=r"accumulative_counts must be 1 for LookSAMOptimWrapper "
                                         r"\(LookSAM does not accumulate gradients over "
                                         r"micro-batches; use a larger batch\), got 2"):
        build_optim_wrapper(make_model(TinyClassifier), optim_cfg(
            "LookSAMOptimWrapper", accumulative_counts=2))


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    out = tmp_path_factory.mktemp("mm_accum")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         os.path.join(HERE, "mm_accum_worker.py"), str(out)],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {case: [torch.load(out / f"{case}-{rank}.pt") for rank in range(2)]
            for case in DDP_CASES}


@pytest.mark.parametrize("name", [case for case in DDP_CASES if "-" not in case])
def test_under_ddp_one_all_reduce_per_step_and_the_run_of_4_micro_batches(ddp, name):
    """2 ranks x 2 accumulated iterations = the core on the 4 micro-batches of each step (the
    run's last iteration: a group of 2); no pass is synchronized by DDP, the update gradient is
    all-reduced once, on the update iterations, those where mmengine's ``should_sync()`` allows
    synchronization (ARSAM's sampled steps: its mean g_SGD before the ascent, then the update)."""
    model_class, kwargs = DDP_CASES[name]
    model, data = make_model(model_class), TinyData(n=32)
    starts = range(0, ITERS, COUNTS)
    groups = [[data.batch(it, rank=r, world=2) for r in range(2)
               for it in range(i, min(i + COUNTS, ITERS))] for i in starts]
    updates = [min(i + COUNTS, ITERS) - 1 for i in starts]  # mmengine's should_update
    expected, stats = accumulated(model, name, groups, **kwargs)
    r0, r1 = ddp[name]
    for key, value in expected.named_parameters():
        torch.testing.assert_close(r0["params"][key], value.detach(), **TIGHT)
        torch.testing.assert_close(r1["params"][key], r0["params"][key], rtol=0, atol=0)
    record = r0["record"]
    assert [r["ddp"] for r in record] == [0] * ITERS
    assert [r["should_sync"] for r in record] == [it in updates for it in range(ITERS)]
    per_step = [1 + (name == "ARSAM" and s["sampled"]) for s in stats]
    expected_counts = [sum(n for u, n in zip(updates, per_step) if u <= it)
                       for it in range(ITERS)]
    assert [r["wrapper"] for r in record] == expected_counts
    assert [record[i]["stats"]["sampled"] for i in updates] == [s["sampled"] for s in stats]


def test_under_ddp_sync_ascent_all_reduces_each_micro_batchs_ascent(ddp):
    """sync_ascent=True with accumulation: each iteration's ascent gradient (the reused forward's)
    is all-reduced too, over the ranks; every rank stays identical."""
    r0, r1 = ddp["SAM-sync_ascent"]
    for key, value in r0["params"].items():
        torch.testing.assert_close(r1["params"][key], value, rtol=0, atol=0)
    assert [r["wrapper"] for r in r0["record"]] == [1, 3, 4, 6, 7, 9, 11]
    assert [r["ddp"] for r in r0["record"]] == [0] * ITERS
    assert not torch.allclose(r0["params"]["fc.weight"], ddp["SAM"][0]["params"]["fc.weight"])
