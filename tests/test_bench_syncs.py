"""scripts/step_syncs.py (the pending GPU check, docs/benchmarks.md) runs: on the CPU, tiny."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "step_syncs.py")


def run(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, SCRIPT, "--device", "cpu", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_step_syncs_measures_every_optimizer_under_each_amp_mode(tmp_path):
    out = tmp_path / "syncs.json"
    proc = run("--model", "tiny", "--batch-size", "8", "--amp", "bf16,none", "--optimizers",
               "SGD,SAM,ARSAM", "--warmup", "1", "--steps", "2", "--sync-steps", "1",
               "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["amp"], r["optimizer"]) for r in rows] == [
        (amp, name) for amp in ("bf16", "none") for name in ("SGD", "SAM", "ARSAM")]
    for r in rows:
        assert r["images_per_s"] == 8 / r["step_s"] and r["step_s"] > 0
        assert r["x_sgd"] == r["images_per_s"] / next(
            s["images_per_s"] for s in rows if s["optimizer"] == "SGD" and s["amp"] == r["amp"])
        assert r["syncs_sampled"] == r["syncs_unsampled"] == []  # counted on CUDA only


def test_step_syncs_refuses_fp16_on_the_cpu():
    proc = run("--amp", "fp16")
    assert proc.returncode == 2
    assert "--amp fp16 needs --device cuda (CPU autocast: bf16)" in proc.stderr


def test_arsam_variants_runs_the_accuracy_benchmark_with_extra_arsam_labels(tmp_path):
    """scripts/arsam_variants.py (docs/arsam.md's ablations): a label given as JSON arguments
    runs as ARSAM with them."""
    out = tmp_path / "acc.json"
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "arsam_variants.py"),
         'avg0.5={"average": 0.5, "start_iter": 2}', "--", "--dataset", "digits", "--seeds", "1",
         "--noise", "0.4", "--epochs", "1", "--train-subset", "64", "--batch-size", "32",
         "--optimizers",
         "SGD,avg0.5", "--json", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["results"]
    assert [r["optimizer"] for r in rows] == ["SGD", "avg0.5"]
    assert rows[1]["steps"] == 2 and rows[1]["runs"][0]["sam_gradients"] == 2  # start_iter 2
