"""Gradient accumulation (SharpnessAwareOptimizer.accumulate): n micro-batches, each its own
computation, equal the same run on one n times larger batch split over n DDP ranks with
per-replica ascent (core_accum_worker.py, 2 gloo processes); failures, skips and refusals."""
import os
import subprocess
import sys

import pytest
import torch
from core_accum_worker import ACCUM_CASES, STEPS, parts
from core_cases import closure_for, data, make, net

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
        record.append(dict(stats=dict(opt.stats), generator=opt.generator.get_state(),
                           weights=[p.detach().clone() for p in model.parameters()]))
    return record


@pytest.mark.parametrize("micro", [1, 2])
@pytest.mark.parametrize("case", list(ACCUM_CASES))
def test_accumulation_equals_ddp_with_per_replica_ascent(ddp, case, micro):
    """WORLD·micro accumulated micro-batches = WORLD ranks of ``micro`` micro-batches each, step
    for step: weights, ARSAM's decisions and PSF norms, the generator (ESAM's draws)."""
    ours, ranks = accumulated(case, WORLD * micro), [r[(case, micro)] for r in ddp]
    for step, (mine, *theirs) in enumerate(zip(ours, *ranks)):
        for other in theirs:
            for p, q in zip(mine["weights"], other["weights"]):
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
