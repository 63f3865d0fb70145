"""arsam-bench on tiny models: the harness runs and its JSON holds what it promises (never
timings); accuracy on a digits subset; plots from our JSON and from mmengine logs."""
import json

import numpy as np
import pytest
import torch

from arsam import fashion_mnist, nets
from arsam.bench import accuracy, main
from arsam.bench.common import (OPTIMIZERS, build_optimizer, method, parse_optimizers,
                                per_sample_closure, train_step)
from arsam.bench.plots import load_trace, plot_pareto
from arsam.bench.throughput import PassTimer, mixed, peak_rss_mib, run, summarize

B = 8
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, above all on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# forward / backward samples of one step at batch B (SAM-gradient steps for the reuse optimizers)
SAMPLES = {"SGD": (8, 8), "SAM": (16, 16), "ESAM": (8 + 8 + 4, 8 + 4),
           "KSAM": (8 + 1 + 4, 1 + 4)}


@pytest.fixture(scope="module")
def throughput():
    torch.manual_seed(0)
    return run(model="tiny", batch_size=B, steps=2, warmup=1, rates=(0.5,), device="cpu",
               memory=False)


def test_throughput_rows_and_types(throughput):
    rows = throughput["results"]
    assert [r["label"] for r in rows] == list(OPTIMIZERS) + ["ARSAM@0.5"]
    floats = ("sampling_rate", "realized_rate", "step_time_s", "images_per_s", "forward_s",
              "backward_s", "overhead_s", "overhead_fraction", "forward_samples",
              "backward_samples", "speed_vs_sgd", "speed_vs_sam", "relative_step_time")
    for r in rows:
        assert all(isinstance(r[k], float) for k in floats), r["label"]
        assert r["steps"] == 2 and len(r["step_times_s"]) == 2
        assert [type(v) for v in r["sampled_steps"]] == [bool, bool]
        assert r["peak_memory_mb"] is None
        assert r["images_per_s"] == pytest.approx(B / r["step_time_s"], rel=1e-12)
        assert r["rate_source"] in ("schedule", "realized")
    by = {r["label"]: r for r in rows}
    assert by["SGD"]["speed_vs_sgd"] == 1.0 and by["SAM"]["speed_vs_sam"] == 1.0
    assert by["SGD"]["relative_step_time"] == 1.0  # its own steps over its own steps
    for r in rows:
        assert r["speed_vs_sam"] == pytest.approx(by["SAM"]["relative_step_time"]
                                                  / r["relative_step_time"], rel=1e-12)
    for name, (fwd, bwd) in SAMPLES.items():
        assert (by[name]["forward_samples"], by[name]["backward_samples"]) == (fwd, bwd)
    # ARSAM at 0.5 after its SAM step 1: steps 2, 3 are plain, sampled (credit 0.5, 1.0)
    arsam_row = by["ARSAM@0.5"]
    assert (arsam_row["sampling_rate"], arsam_row["realized_rate"]) == (0.5, 0.5)
    assert arsam_row["forward_samples"] == 0.5 * 16 + 0.5 * 8
    assert throughput["config"]["rates"] == [0.5]
    json.dumps(throughput)  # serializable as is


def test_mixed_weights_the_medians_of_the_two_kinds_of_step():
    values, sampled = [1.0, 2.0, 10.0, 20.0, 30.0], np.array([0, 0, 1, 1, 1], dtype=bool)
    assert mixed(values, sampled, 0.25) == 0.25 * 20.0 + 0.75 * 1.5
    assert mixed(values, sampled, 1.0) == 20.0


def test_summary_falls_back_to_the_realized_rate_when_one_kind_of_step_is_missing():
    record = dict(step=[2.0, 4.0], forward=[1.0, 1.0], backward=[0.5, 1.0], sampled=[False] * 2,
                  forward_samples=[8, 8], backward_samples=[8, 8], rate=0.2)
    row = summarize("ARSAM@0.2", "ARSAM", 0.2, record, 8)
    assert (row["sampling_rate"], row["rate_source"]) == (0.0, "realized")
    assert (row["step_time_s"], row["overhead_s"], row["images_per_s"]) == (3.0, 1.25, 8 / 3.0)
    assert row["step_time_sampled_s"] is None and row["step_time_unsampled_s"] == 3.0


def test_pass_timer_counts_closure_and_backward_and_restores_autograd():
    original = torch.autograd.backward
    model = nets.SmallCNN(10, in_channels=3, width=4)
    closure = per_sample_closure(model, torch.randn(4, 3, 8, 8), torch.arange(4))
    timer = PassTimer(torch.device("cpu"))
    with timer:
        assert torch.autograd.backward is not original
        timer.wrap(closure)().mean().backward()
    assert torch.autograd.backward is original
    assert timer.forward > 0 and timer.backward > 0
    assert all(p.grad is not None for p in model.parameters())


def test_fixed_rate_schedule_samples_evenly_after_one_sam_step():
    torch.manual_seed(0)
    model = nets.SmallCNN(10, in_channels=3, width=4)
    opt = build_optimizer("ARSAM@0.25:0.7", model, lr=0.01, start_iter=5)
    closure = per_sample_closure(model, torch.randn(4, 3, 8, 8), torch.arange(4))
    pattern = [train_step(opt, closure)[1]["sampled"] for _ in range(9)]
    assert pattern == [True, False, False, False, True, False, False, False, True]
    assert (opt.schedule.rate, opt.schedule.gamma, opt.start_iter) == (0.25, 0.7, 1)


@pytest.mark.parametrize("label, expected", [
    ("PeriodicSAM-2", ("PeriodicSAM", dict(k=2))),
    ("ARSAM-vsam", ("ARSAM", dict(schedule="vsam"))),
    ("ARSAM@0.1", ("ARSAM", dict(schedule="fixed", rate=0.1, start_iter=1))),
    ("ARSAM@0.05:0.7", ("ARSAM", dict(schedule="fixed", rate=0.05, start_iter=1, gamma=0.7))),
    ("MSAM-rho3", ("MSAM", dict(rho=3.0))),
    ("LookSAM-5-a0.2-rho0.05", ("LookSAM", dict(k=5, alpha=0.2, rho=0.05))),
    ("ARSAM@0.1-rho1.5", ("ARSAM", dict(schedule="fixed", rate=0.1, start_iter=1, rho=1.5))),
])
def test_method_labels(label, expected):
    assert method(label) == expected


@pytest.mark.parametrize("label", ["SAM@0.5", "ARSAM@x", "ARSAM@0.1:y", "Adam", "SGD-rho3",
                                   "MSAM-rho0", "MSAM-rho-1", "MSAM-rhox", "MSAM-rhoinf",
                                   "MSAM-rho3-rho2", "Adam-rho1"])
def test_unknown_method_labels(label):
    with pytest.raises(ValueError, match=rf"unknown method '{label}': expected one of SGD, SAM"):
        method(label)


def test_rho_label_overrides_the_runs_rho():
    model = nets.SmallCNN(10, in_channels=1, width=4)
    opts = {label: build_optimizer(label, model, lr=0.01, rho=0.2)
            for label in ("MSAM", "MSAM-rho3", "SAM-rho0.05")}
    assert {label: [g["rho"] for g in opt.param_groups] for label, opt in opts.items()} == {
        "MSAM": [0.2], "MSAM-rho3": [3.0], "SAM-rho0.05": [0.05]}
    assert type(opts["MSAM-rho3"]).__name__ == "MSAM"
    assert parse_optimizers("SGD, MSAM-rho3") == ["SGD", "MSAM-rho3"]


def row(name, accuracy):
    return dict(optimizer=name, accuracy_mean=accuracy)


@pytest.mark.parametrize("accuracies, expected", [
    ((50.0, 70.0, 65.0), (0.0, 1.0, 0.75)),
    ((52.0, 50.0, 65.0), (None, None, None)),  # SAM below SGD: no gain to keep
    ((50.0, 50.0, 65.0), (None, None, None)),  # SAM ties SGD
])
def test_gain_kept(accuracies, expected):
    rows = accuracy.gain_kept([row(n, a) for n, a in zip(("SGD", "SAM", "ARSAM"), accuracies)])
    assert [r["gain_kept"] for r in rows] == list(expected)
    assert [r["gain_kept"] for r in accuracy.gain_kept([row("SAM", 70.0), row("X", 60.0)])] == [
        None, None]


def test_throughput_cli_writes_json_with_memory(tmp_path, capsys):
    path = tmp_path / "t.json"
    ballast = torch.ones(2 ** 26)  # 256 MiB in this process that the probe must not count
    assert main(["throughput", "--model", "tiny", "--batch-size", "8", "--steps", "1",
                 "--warmup", "1", "--rates", "0.5", "--optimizers", "ARSAM",
                 "--device", "cpu", "--threads", "1", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert [r["label"] for r in data["results"]] == ["ARSAM", "ARSAM@0.5"]
    assert [type(r["peak_memory_mb"]) for r in data["results"]] == [float, type(None)]
    assert data["results"][0]["peak_memory_mb"] < peak_rss_mib() - 200
    del ballast
    assert data["results"][0]["speed_vs_sgd"] is None  # SGD not run
    assert data["machine"]["device"] == "cpu" and data["config"]["model"] == "tiny"
    assert "ARSAM@0.5" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["throughput", "--rates", "0,0.5"], "--rates must be a comma-separated list of rates in"),
    (["throughput", "--optimizers", "SGD,Adam"], "--optimizers must be a comma-separated list"),
    (["accuracy", "--optimizers", "MSAM-rho0"], "followed by -rho<rho>, got 'MSAM-rho0'"),
    (["accuracy", "--noise", "1.0"], "--noise must be a comma-separated list of fractions"),
    (["accuracy", "--seeds", "0"], "--seeds must be an int >= 1, got '0'"),
])
def test_cli_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def digits_run():
    return accuracy.run(noises=(0.0, 0.4), seeds=2, epochs=2,
                        optimizers=("SGD", "SAM", "ARSAM@0.5"), batch_size=32, train_subset=96,
                        device="cpu")


def test_accuracy_results(digits_run):
    result, trace = digits_run
    rows = result["results"]
    assert [(r["optimizer"], r["noise"]) for r in rows] == [
        (name, noise) for noise in (0.0, 0.4) for name in ("SGD", "SAM", "ARSAM@0.5")]
    for r in rows:
        assert r["steps"] == 2 * (96 // 32) and r["seeds"] == 2 and len(r["runs"]) == 2
        accs = [one["accuracy"] for one in r["runs"]]
        assert r["accuracy_mean"] == pytest.approx(sum(accs) / 2, rel=1e-12)
        assert r["accuracy_std"] == pytest.approx(abs(accs[0] - accs[1]) / 2 ** 0.5, rel=1e-12)
        for one in r["runs"]:
            assert 0 <= one["accuracy"] <= 100 and one["train_time_s"] > 0
            assert len(one["curve"]) == 2 and one["curve"][-1] == [one["train_time_s"],
                                                                    one["accuracy"]]
            assert one["images_per_s"] == pytest.approx(6 * 32 / one["train_time_s"], rel=1e-12)
    grads = {r["optimizer"]: r["sam_gradients"] for r in rows}
    # ARSAM at 0.5: step 1 is SAM, then every second step (3 and 5)
    assert grads == {"SGD": 0, "SAM": 6, "ARSAM@0.5": 3}
    for noise in (0.0, 0.4):
        acc = {r["optimizer"]: r["accuracy_mean"] for r in rows if r["noise"] == noise}
        gain = acc["SAM"] - acc["SGD"]
        for r in (r for r in rows if r["noise"] == noise):
            expected = (acc[r["optimizer"]] - acc["SGD"]) / gain if gain > 0 else None
            assert r["gain_kept"] == expected
    assert [(t["optimizer"], t["noise"], t["seed"], len(t["records"])) for t in trace["runs"]] == [
        ("ARSAM@0.5", 0.0, 0, 6), ("ARSAM@0.5", 0.4, 0, 6)]
    first = trace["runs"][0]["records"][0]
    assert set(first) == {"step", "loss", "sampled", "sampling_rate", "psf_norm", "sgd_norm"}
    assert first["step"] == 1 and first["sampled"] is True and first["psf_norm"] > 0
    json.dumps(result), json.dumps(trace)


def test_same_seed_same_result(digits_run):
    again, _ = accuracy.run(noises=(0.4,), seeds=1, epochs=2,
                            optimizers=("SGD", "SAM", "ARSAM@0.5"), batch_size=32,
                            train_subset=96, device="cpu", trace=False)
    first = [r for r in digits_run[0]["results"] if r["noise"] == 0.4]
    assert ([r["runs"][0]["accuracy"] for r in first] ==
            [r["runs"][0]["accuracy"] for r in again["results"]])


def test_missing_cifar_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no cifar10 data in torchvision's layout"):
        accuracy.run(noises=(0.0,), seeds=1, epochs=1, dataset="cifar10", data_root=str(tmp_path),
                     device="cpu")
    with pytest.raises(ValueError, match="--dataset cifar100 needs --data-root"):
        accuracy.run(dataset="cifar100", device="cpu")


def test_plot_from_accuracy_json_and_trace(digits_run, tmp_path):
    result, trace = digits_run
    (tmp_path / "a.json").write_text(json.dumps(result))
    (tmp_path / "t.json").write_text(json.dumps(trace))
    assert main(["plot", "--accuracy-json", str(tmp_path / "a.json"), "--trace-json",
                 str(tmp_path / "t.json"), "--out", str(tmp_path / "out")]) == 0
    for name in ("accuracy_vs_time.png", "accuracy_vs_sam_gradients.png", "sampling_trace.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == PNG


def test_pareto_plot_draws_sgd_cost_and_off_scale_methods(tmp_path):
    """MSAM at 0 SAM gradients per step (symlog axis) and a method far below SGD (drawn at the
    floor) on a Fashion-MNIST-like result."""
    rows = [dict(optimizer=name, noise=0.6, accuracy_mean=acc, accuracy_std=1.0,
                 sam_gradient_fraction=cost, runs=[])
            for name, acc, cost in (("SGD", 49.0, 0.0), ("SAM", 73.0, 1.0),
                                    ("MSAM-rho3", 55.0, 0.0), ("LookSAM-5", 21.6, 0.2),
                                    ("ARSAM", 70.0, 0.127))]
    path = tmp_path / "pareto.png"
    plot_pareto(dict(config=dict(dataset="fashion-mnist", rho=0.2), results=rows), str(path))
    assert path.read_bytes()[:8] == PNG


def test_plot_reads_mmengine_scalars(tmp_path):
    log = tmp_path / "20260101_000000" / "vis_data" / "scalars.json"
    log.parent.mkdir(parents=True)
    lines = [dict(lr=0.1, loss=2.3, sampled=1.0, sampling_rate=1.0, psf_norm=0.5, sgd_norm=2.0,
                  step=1),
             dict(coco_metric=0.1, step=1),  # an evaluation line: no trace keys
             {"train/sampled": 0.0, "train/sampling_rate": 0.5, "train/psf_norm": 0.5, "iter": 2}]
    log.write_text("\n".join(json.dumps(entry) for entry in lines) + "\n")
    runs = load_trace(str(log))
    assert runs == [dict(label="20260101_000000", group="mmengine log", records=[
        dict(sampling_rate=1.0, psf_norm=0.5, sgd_norm=2.0, sampled=True, step=1),
        dict(sampling_rate=0.5, psf_norm=0.5, sgd_norm=None, sampled=False, step=2)])]
    assert main(["plot", "--trace-json", str(log), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "sampling_trace.png").read_bytes()[:8] == PNG


def test_plot_rejects_logs_without_trace_keys(tmp_path):
    log = tmp_path / "scalars.json"
    log.write_text(json.dumps(dict(loss=1.0, step=1)) + "\n")
    with pytest.raises(ValueError, match="no entries with any of the keys sampling_rate"):
        load_trace(str(log))
    log.write_text("not json\n")
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        load_trace(str(log))
    with pytest.raises(ValueError, match="plot needs --accuracy-json and/or --trace-json"):
        main(["plot", "--out", str(tmp_path)])


FASHION_ROOT = fashion_mnist.default_root()


@pytest.mark.skipif(not fashion_mnist.available(FASHION_ROOT),
                    reason=f"Fashion-MNIST is not under {fashion_mnist.raw_folder(FASHION_ROOT)!r}"
                    " (run `make data`, or set ARSAM_DATA to its root)")
def test_accuracy_on_a_fashion_mnist_slice():
    result, trace = accuracy.run(noises=(0.4,), seeds=1, epochs=2,
                                 optimizers=("SGD", "SAM", "ARSAM"), batch_size=64,
                                 train_subset=256, test_subset=100, device="cpu",
                                 dataset="fashion-mnist", warmup_epochs=0.5)
    config = result["config"]
    assert (config["dataset"], config["lr"], config["rho"]) == ("fashion-mnist", 0.05, 0.2)
    assert (config["train_subset"], config["test_subset"], config["warmup_epochs"]) == (
        256, 100, 0.5)
    rows = {r["optimizer"]: r for r in result["results"]}
    assert all(r["steps"] == 8 for r in rows.values())
    # on 100 test images the accuracy in % is the count of correct ones
    assert all(run["accuracy"] == int(run["accuracy"]) for r in rows.values() for run in r["runs"])
    assert (rows["SGD"]["sam_gradients"], rows["SAM"]["sam_gradients"]) == (0, 8)
    # ARSAM: the half-epoch warm-up (2 steps of 4) is plain SAM, the rule decides afterwards
    records = trace["runs"][0]["records"]
    assert [r["sampled"] for r in records[:2]] == [True, True]
    assert rows["ARSAM"]["sam_gradients"] == sum(r["sampled"] for r in records)


def test_test_subset_needs_fashion_mnist():
    with pytest.raises(ValueError, match="--test-subset needs --dataset fashion-mnist"):
        accuracy.run(noises=(0.0,), seeds=1, epochs=1, test_subset=10, device="cpu")
