"""The scripts run: step_syncs.py (the pending GPU check, docs/benchmarks.md) on the CPU, tiny;
arsam_variants.py; merge_accuracy.py on made-up pieces."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script(name, *args):
    """Run scripts/<name> with arsam importable, one thread."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", name), *args], env=env,
                          capture_output=True, text=True, timeout=300)


def run(*args):
    return script("step_syncs.py", "--device", "cpu", *args)


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
    proc = script(
        "arsam_variants.py", 'avg0.5={"average": 0.5, "start_iter": 2}', "--", "--dataset",
        "digits", "--seeds", "1", "--noise", "0.4", "--epochs", "1", "--train-subset", "64",
        "--batch-size", "32", "--optimizers", "SGD,avg0.5", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["results"]
    assert [r["optimizer"] for r in rows] == ["SGD", "avg0.5"]
    assert rows[1]["steps"] == 2 and rows[1]["runs"][0]["sam_gradients"] == 2  # start_iter 2


def piece(noise, rows):
    """An ``arsam-bench accuracy`` JSON of one noise level: rows (method, accuracies, speed)."""
    config = dict(dataset="digits", seeds=2, noises=[noise], optimizers=[r[0] for r in rows])
    return dict(benchmark="accuracy", config=config, machine={}, results=[
        dict(optimizer=name, noise=noise, accuracy_mean=sum(accs) / 2, speed_vs_sam=speed,
             runs=[dict(accuracy=a) for a in accs]) for name, accs, speed in rows])


def merge_script(tmp_path, *args, pieces):
    paths = []
    for k, p in enumerate(pieces):
        paths.append(tmp_path / f"piece{k}.json")
        paths[-1].write_text(json.dumps(p))
    out = tmp_path / "merged.json"
    return script("merge_accuracy.py", *args, str(out), *map(str, paths)), out


def test_merge_accuracy_keeps_sam_once_recomputes_the_gain_and_excludes_labels(tmp_path):
    """SAM in both pieces is kept once; the gain kept is over the merged rows of its noise; an
    excluded label is left out of the rows and the config."""
    a = piece(0.4, [("SGD", [60.0, 62.0], 2.0), ("SAM", [70.0, 72.0], 1.0),
                    ("rr0.12", [75.0, 75.0], 1.7)])
    b = piece(0.4, [("SAM", [70.0, 72.0], 1.0), ("ARSAM", [68.0, 68.0], 1.8)])
    proc, out = merge_script(tmp_path, "--exclude", "rr0.12", pieces=[a, b])
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = json.loads(out.read_text())
    rows = merged["results"]
    assert [(r["optimizer"], r["gain_kept"]) for r in rows] == [
        ("SGD", 0.0), ("SAM", 1.0), ("ARSAM", 0.7)]  # (68 - 61) / (71 - 61)
    assert merged["config"]["optimizers"] == ["SGD", "SAM", "ARSAM"]
    assert [r["speed_vs_sam"] for r in rows] == [2.0, 1.0, 1.8]  # each from its own piece


def test_merge_accuracy_refuses_pieces_whose_shared_method_differs(tmp_path):
    a = piece(0.4, [("SGD", [60.0, 62.0], 2.0), ("SAM", [70.0, 72.0], 1.0)])
    b = piece(0.4, [("SAM", [70.0, 71.0], 1.0)])
    proc, _ = merge_script(tmp_path, pieces=[a, b])
    assert proc.returncode != 0
    assert "('SAM', 0.4) differs between pieces: [70.0, 72.0] against [70.0, 71.0]" in proc.stderr


def test_arsam_variants_records_what_matched_observes(tmp_path):
    """--samples: one run per 'matched' optimizer, one record per SAM gradient (the warm-up's
    two flagged), the weight never below ``average``; the printed medians are the records'."""
    out, samples = tmp_path / "acc.json", tmp_path / "samples.json"
    proc = script(
        "arsam_variants.py", "--samples", str(samples),
        'm={"start_iter": 2, "min_rate": 0.5, "max_rate": 1.0}', "--", "--dataset", "digits",
        "--seeds", "1", "--noise", "0.4", "--epochs", "2", "--train-subset", "64",
        "--batch-size", "16", "--optimizers", "SGD,m", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = json.loads(samples.read_text())
    rows = json.loads(out.read_text())["results"]
    assert run["method"] == "m" and len(run["samples"]) == rows[1]["runs"][0]["sam_gradients"]
    flags = [s["after_warmup"] for s in run["samples"]]
    assert flags[:2] == [False, False] and all(flags[2:]) and len(flags) > 2
    assert all(0.1 <= s["average"] <= 1.0 for s in run["samples"])
    after = [s for s in run["samples"] if s["after_warmup"]]
    r = sorted(s["psf_norm"] / s["sgd_norm"] for s in after)
    median_r = r[len(r) // 2] if len(r) % 2 else (r[len(r) // 2 - 1] + r[len(r) // 2]) / 2
    line = proc.stdout.strip().splitlines()[-1].split()
    assert line[:2] == ["m", "(0)"] and line[3] == f"{median_r:.3f}"
