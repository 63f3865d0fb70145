"""Gradient accumulation (SharpnessAwareOptimizer.accumulate): n micro-batches, each its own
computation, equal the same run on one n times larger batch split over n DDP ranks with
per-replica ascent (core_accum_worker.py, 2 gloo processes); failures, skips and refusals."""
import copy
import os
import subprocess
import sys

import pytest
import torch
from core_accum_worker import ACCUM_CASES, MODES, STEPS, parts, snapshot
from core_cases import closure_for, make, net, sam_every_step
from test_core_protocol import assert_unchanged
from test_core_protocol import snapshot as state_snapshot
from test_core_safety import failing

WORLD = 2
HERE = os.path.dirname(os.path.abspath(__file__))
TIGHT = dict(rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    out = tmp_path_factory.mktemp("accum")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc_per_node={WORLD}", os.path.join(HERE, "core_accum_worker.py"),
                           str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


def accumulated(case, n):
    """The case trained in one process, each step's batch as ``n`` accumulated micro-batches."""
    model = net(seed=0)
    opt = make(case, model.parameters(), **ACCUM_CASES[case])
    record = []
    for step in range(STEPS):
        for x, y in parts(step, n):
            opt.accumulate(closure_for(model, x, y))
        opt.step()
        record.append(snapshot(opt, model))
    return record


@pytest.mark.parametrize("micro, once", MODES)
@pytest.mark.parametrize("case", list(ACCUM_CASES))
def test_accumulation_equals_ddp_with_per_replica_ascent(ddp, case, micro, once):
    """WORLD·micro accumulated micro-batches = WORLD ranks of ``micro`` micro-batches each, step
    for step: weights, ARSAM's decisions, stored PSF and its norm, the generator (ESAM's
    draws)."""
    ours, ranks = accumulated(case, WORLD * micro), [r[(case, micro, once)] for r in ddp]
    for step, (mine, *theirs) in enumerate(zip(ours, *ranks)):
        for other in theirs:
            assert len(mine["psf"]) == len(other["psf"])
            for p, q in zip(mine["weights"] + mine["psf"], other["weights"] + other["psf"]):
                torch.testing.assert_close(p, q, **TIGHT, msg=lambda m: f"step {step}: {m}")
            assert torch.equal(mine["generator"], other["generator"])
            for key in ("sampled", "psf_norm"):
                assert (mine["stats"][key] is None) == (other["stats"][key] is None)
                torch.testing.assert_close(mine["stats"][key], other["stats"][key], **TIGHT)
    if case.startswith("ARSAM"):  # reuse steps were checked too
        assert not all(r["stats"]["sampled"] for r in ours)


def test_accumulation_differs_from_one_big_batch():
    """The micro-batches' own ascents (m-sharpness) are not one batch's: the equality above is
    not that of any split."""
    ours, whole = accumulated("SAM", 2), accumulated("SAM", 1)
    assert not torch.allclose(ours[-1]["weights"][0], whole[-1]["weights"][0], atol=1e-5)


# ----------------------------------------------------------------------------- failures
def started(name, steps=3, **kwargs):
    """A model and optimizer after ``steps`` accumulated steps (momentum, PSF, schedule)."""
    model = net()
    opt = make(name, model.parameters(), **{**ACCUM_CASES[name], **kwargs})
    for step in range(steps):
        for x, y in parts(step, 2):
            opt.accumulate(closure_for(model, x, y))
        opt.step()
    return model, opt


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def assert_equal(a, b):
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


#: passes of one micro-batch in accumulate() (ARSAM's SAM pass comes at step())
MICRO_PASSES = {"SAM": 2, "ESAM": 3, "KSAM": 3, "PeriodicSAM": 2, "MSAM": 1, "ARSAM-fixed": 1}


@pytest.mark.parametrize("name, fail_on", [(n, f) for n, k in MICRO_PASSES.items()
                                           for f in range(1, k + 1)])
def test_a_micro_batch_that_fails_adds_nothing(name, fail_on):
    """The failed micro-batch leaves the weights at w and no gradient; the earlier one is kept:
    given again, the step is bit for bit the one that never failed."""
    clean, clean_opt = started(name, **sam_every_step(name))
    model, opt = started(name, **sam_every_step(name))
    (x0, y0), (x1, y1) = parts(9, 2)
    opt.accumulate(closure_for(model, x0, y0))
    before = weights(model)
    with pytest.raises(RuntimeError, match="^boom$"):
        opt.accumulate(closure_for(model, x1, y1, edit=failing(fail_on)))
    assert_equal(weights(model), before)
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    opt.zero_grad()  # between micro-batches: the accumulated sum is kept aside
    opt.accumulate(closure_for(model, x1, y1))
    opt.step()
    for x, y in ((x0, y0), (x1, y1)):
        clean_opt.accumulate(closure_for(clean, x, y))
    clean_opt.step()
    assert_equal(weights(model), weights(clean))
    assert torch.equal(opt.generator.get_state(), clean_opt.generator.get_state())


@pytest.mark.parametrize("fail_in", [0, 1])
def test_arsam_failing_at_step_drops_the_step(fail_in):
    """ARSAM's SAM passes run at step(): one that raises leaves the weights at w, no gradient,
    the state (schedule, PSF, generator, iteration) as before the step, nothing accumulated."""
    model, opt = started("ARSAM-vsam", start_iter=10)  # every step sampled
    snap = state_snapshot(model, opt)
    for j, (x, y) in enumerate(parts(9, 2)):  # each closure's pass 2 is its SAM pass
        opt.accumulate(closure_for(model, x, y, edit=failing(2) if j == fail_in else None))
    with pytest.raises(RuntimeError, match="^boom$"):
        opt.step()
    assert_unchanged(model, opt, snap)
    with pytest.raises(TypeError, match="none was"):  # nothing left accumulated
        opt.step()


def test_a_non_finite_micro_batch_skips_the_whole_step():
    """As under DDP, where every rank skips when one is not finite: the other micro-batches run
    no pass, the step changes nothing but the skip count."""
    model, opt = started("SAM", skip_nonfinite=True)
    snap = state_snapshot(model, opt)
    (x0, y0), (x1, y1), (x2, y2) = parts(9, 3)
    x1 = x1.clone()
    x1[0, 0] = float("nan")
    after = closure_for(model, x2, y2)
    calls = []
    opt.accumulate(closure_for(model, x0, y0))
    assert torch.isnan(opt.accumulate(closure_for(model, x1, y1)))
    opt.accumulate(lambda indices=None: calls.append(indices) or after(indices))
    assert torch.isnan(opt.step()) and opt.stats["skipped"] and calls == []
    assert opt.skipped_steps == 1
    opt.skipped_steps = 0
    assert_unchanged(model, opt, snap)


def test_step_returns_the_mean_loss_and_looksam_refuses_a_second_micro_batch():
    model = net()
    opt = make("LookSAM", model.parameters())
    (x0, y0), (x1, y1) = parts(0, 2)
    loss = opt.accumulate(closure_for(model, x0, y0))
    with pytest.raises(NotImplementedError, match="LookSAM does not accumulate gradients"):
        opt.accumulate(closure_for(model, x1, y1))
    reference = net()
    ref_opt = make("LookSAM", reference.parameters())
    torch.testing.assert_close(opt.step(), loss, rtol=0, atol=0)  # one micro-batch: its loss
    ref_opt.step(closure_for(reference, x0, y0))
    assert_equal(weights(model), weights(reference))
    model = net()
    sam = make("SAM", model.parameters())
    losses = [sam.accumulate(closure_for(model, x, y)) for x, y in parts(0, 2)]
    torch.testing.assert_close(sam.step(), torch.stack(losses).mean(), rtol=0, atol=0)


def test_load_state_dict_drops_the_micro_batches_accumulated_before():
    """A state holds whole steps: loaded mid-way, the next step is the loaded run's own."""
    model, opt = started("ARSAM-fixed")
    state = copy.deepcopy(opt.state_dict())
    clean, clean_opt = started("ARSAM-fixed")
    for x, y in parts(9, 2):
        opt.accumulate(closure_for(model, x, y))
    opt.load_state_dict(state)
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(TypeError, match="none was"):
        opt.step()
    for opt_, model_ in ((opt, model), (clean_opt, clean)):
        for x, y in parts(10, 2):
            opt_.accumulate(closure_for(model_, x, y))
        opt_.step()
    assert_equal(weights(model), weights(clean))
