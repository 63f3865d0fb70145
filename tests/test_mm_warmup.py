"""The one-line ARSAM config trains in every loop with the default warm-up (issue 17): the
official 3 epochs, an epoch being a pass over the training data, cut to 10 % of a shorter run
with one warning."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    proc = subprocess.run([sys.executable, os.path.join(HERE, "mm_warmup_worker.py"),
                           str(tmp_path_factory.mktemp("warmup"))], capture_output=True,
                          text=True, timeout=300, cwd=HERE,
                          env={**os.environ, "PYTHONPATH": HERE, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line[7:]) for line in proc.stdout.splitlines()
               if line.startswith("RESULT ")]
    return {r["run"]: r for r in results}


def test_iteration_loop_under_arsam_runner_counts_an_epoch_as_a_pass_over_the_data(runs):
    """16 samples in batches of 8 (InfiniteSampler): 2 steps an epoch, 3 epochs = 6 steps,
    within 10 % of the 100 iterations: not cut, no warning."""
    r = runs["iter_arsam_runner"]
    assert (r["steps_per_epoch"], r["total_steps"], r["warmup"]) == (2, 100, 6)
    assert len(r["sampled"]) == 100 and all(r["sampled"][:6]) and r["warnings"] == []


def test_iteration_loop_under_mmengines_runner_trains_with_a_tenth_of_the_run(runs):
    """Without ArsamRunner's hook the loop counts as one epoch of 100 steps: the default's 300
    steps are cut to 10 of 100, warned once (before: ValueError before training)."""
    r = runs["iter_runner"]
    assert (r["steps_per_epoch"], r["total_steps"], r["warmup"]) == (100, 100, 10)
    assert len(r["sampled"]) == 100 and all(r["sampled"][:10])
    assert r["warnings"] == [
        "ARSAM: the default warm-up of 3 epochs (300 steps of 100) is more than 10% of the run "
        "(total_steps=100): cut to 10 steps; set warmup_epochs or start_iter to choose"]


def test_an_epoch_loop_of_twelve_iterations_trains(runs):
    """32 samples in batches of 8, 3 epochs: 12 iterations; 3 epochs cut to 1 step."""
    r = runs["epoch_runner"]
    assert (r["steps_per_epoch"], r["total_steps"], r["warmup"]) == (4, 12, 1)
    assert len(r["sampled"]) == 12 and r["sampled"][0] and len(r["warnings"]) == 1
