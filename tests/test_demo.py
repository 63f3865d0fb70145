"""`make demo` (arsam.demo) and the progress bar of the long commands."""
import io
import statistics

import pytest
import torch

from arsam import demo, fashion_mnist
from arsam.progress import Progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_in_a_log_prints_a_line_per_tenth():
    clock, stream = Clock(), io.StringIO()
    with Progress(4, "job", stream=stream, width=8, clock=clock) as bar:
        for note in ("a", None, "b", None):
            clock.now += 2.0
            bar.update(note=note)
    assert stream.getvalue() == (
        "job [##------]  25% 1/4 0:02 elapsed, ~0:06 left  a\n"
        "job [####----]  50% 2/4 0:04 elapsed, ~0:04 left  a\n"
        "job [######--]  75% 3/4 0:06 elapsed, ~0:02 left  b\n"
        "job [########] 100% 4/4 0:08 elapsed  b\n")


def test_progress_on_a_terminal_redraws_in_place_at_most_every_fifth_of_a_second():
    clock, stream = Clock(), Terminal()
    with Progress(30, "job", stream=stream, width=10, clock=clock) as bar:
        for _ in range(30):
            clock.now += 0.125
            bar.update()
    frames = stream.getvalue().split("\r")[1:]
    assert len(frames) == 15 + 1  # every second update, and the last line once more at close
    assert frames[0] == "job [----------]   6% 2/30 0:00 elapsed, ~0:04 left"
    assert frames[-2] == "job [##########] 100% 30/30 0:04 elapsed"
    assert frames[-1] == frames[-2] + "\n"


def test_progress_rejects_an_empty_total():
    with pytest.raises(ValueError, match=r"total must be an int >= 1, got 0"):
        Progress(0, "job")


def runs(accuracies, seconds, sam_gradients, steps=10):
    return [dict(accuracy=a, seconds=s, sam_gradients=g, steps=steps)
            for a, s, g in zip(accuracies, seconds, sam_gradients)]


RESULTS = dict(SGD=runs([70.0, 68.0, 69.0], [1.0, 1.1, 0.9], [0, 0, 0]),
               SAM=runs([91.0, 92.0, 90.0], [2.0, 2.0, 2.0], [10, 10, 10]),
               ARSAM=runs([90.0, 91.0, 92.0], [1.25, 1.0, 1.6], [2, 1, 1]))


def test_summary_means_stds_gradients_per_step_and_median_speed_vs_sam():
    rows = demo.summarize(RESULTS)
    assert [r["optimizer"] for r in rows] == ["SGD", "SAM", "ARSAM"]
    sgd, sam, ours = rows
    assert sgd["accuracy_mean"] == pytest.approx(69.0, abs=1e-12)
    assert sgd["accuracy_std"] == pytest.approx(1.0, abs=1e-12)  # sample std of 70, 68, 69
    assert sam["accuracy_std"] == pytest.approx(1.0, abs=1e-12)
    assert ours["accuracy_mean"] == pytest.approx(91.0, abs=1e-12)
    assert (sgd["sam_gradients_per_step"], sam["sam_gradients_per_step"]) == (0.0, 1.0)
    assert ours["sam_gradients_per_step"] == pytest.approx(4 / 30, abs=1e-12)
    # per seed SAM's time over the method's, median over seeds: SGD 2.0, 1.82, 2.22 -> 2.0
    assert sgd["speed_vs_sam"] == pytest.approx(2.0, abs=1e-12)
    assert ours["speed_vs_sam"] == pytest.approx(statistics.median([1.6, 2.0, 1.25]), abs=1e-12)
    assert sam["speed_vs_sam"] == 1.0
    assert demo.table(rows) == (
        "optimizer    test accuracy %   SAM gradients/step   speed vs SAM\n"
        "SGD               69.0 ± 1.0                 0.00          2.00x\n"
        "SAM               91.0 ± 1.0                 1.00          1.00x\n"
        "ARSAM             91.0 ± 1.0                 0.13          1.60x")
    assert demo.conclusion(rows) == (
        "SAM beats SGD by 22.0 points; ARSAM keeps 100 % of that gain with 0.13 SAM gradients "
        "per step, at 1.60x SAM's speed.")


def test_conclusion_when_sam_does_not_beat_sgd():
    results = dict(RESULTS, SAM=runs([69.0, 68.0, 70.0], [2.0] * 3, [10] * 3))
    assert demo.conclusion(demo.summarize(results)) == (
        "SAM did not beat SGD here (69.0 % vs 69.0 %), so there is no gain for ARSAM to keep: "
        "use more label noise or more epochs.")


def shortened(argv):
    threads = torch.get_num_threads()
    try:
        return demo.main(argv)
    finally:
        torch.set_num_threads(threads)


def test_demo_runs_shortened_and_counts_sam_gradients(capsys):
    rows = shortened(["--dataset", "digits", "--seeds", "2", "--epochs", "4",
                      "--train-subset", "128"])
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == ("digits, 60% of the 128 training labels wrong; SmallCNN (width 64), "
                        "batch 32, rho 0.3, 4 epochs (ARSAM: the first 10% SAM), 2 seeds; cpu, "
                        "1 thread(s)")
    assert lines[1:5] == demo.table(rows).splitlines() and lines[5] == demo.conclusion(rows)
    sgd, sam, ours = rows
    assert sgd["sam_gradients_per_step"] == 0.0 and sam["sam_gradients_per_step"] == 1.0
    # the warm-up: round(10 % of 16 steps) = 2 of SAM, then the schedule samples some
    assert 2 / 16 <= ours["sam_gradients_per_step"] < 1.0
    assert sgd["speed_vs_sam"] > 1.0 and sam["speed_vs_sam"] == 1.0
    bar = err.splitlines()  # 2 seeds x 4 epochs x 4 steps = 32 rounds: a line per tenth
    assert len(bar) == 10 and bar[-1].startswith("demo [########################] 100% 32/32 ")
    assert bar[-1].endswith("  seed 2/2") and "seed 1/2" in bar[0]


@pytest.mark.skipif(not fashion_mnist.available(),
                    reason=f"Fashion-MNIST is not in {fashion_mnist.raw_folder()!r}: make data")
def test_demo_on_fashion_mnist_when_present(capsys):
    rows = shortened(["--seeds", "1", "--epochs", "2", "--train-subset", "128"])  # auto
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("Fashion-MNIST, 60% of the 128 training labels wrong; SmallResNet "
                        "(width 16), batch 64, rho 0.2, 2 epochs (ARSAM: the first 10% SAM), "
                        "1 seeds; cpu, 1 thread(s)")
    assert lines[1:5] == demo.table(rows).splitlines()
    sgd, sam, ours = rows
    assert (sgd["sam_gradients_per_step"], sam["sam_gradients_per_step"]) == (0.0, 1.0)
    assert 1 / 4 <= ours["sam_gradients_per_step"] <= 1.0  # 4 steps, the first one SAM
    assert all(0 <= r["accuracy_mean"] <= 100 for r in rows)


def test_dataset_auto_is_fashion_mnist_when_present_else_digits(monkeypatch):
    monkeypatch.setattr(fashion_mnist, "available", lambda root=None: False)
    assert demo.pick_dataset() == "digits"
    monkeypatch.setattr(fashion_mnist, "available", lambda root=None: True)
    assert demo.pick_dataset() == "fashion-mnist"
    assert demo.pick_dataset("digits") == "digits"
    with pytest.raises(ValueError, match="dataset must be 'auto' or one of fashion-mnist, "
                                         "digits, got 'mnist'"):
        demo.pick_dataset("mnist")


def test_auto_falls_back_to_digits_and_says_so(monkeypatch, capsys):
    monkeypatch.setattr(fashion_mnist, "available", lambda root=None: False)
    shortened(["--seeds", "1", "--epochs", "1", "--train-subset", "64"])
    assert capsys.readouterr().out.startswith(
        "digits (Fashion-MNIST is not in place: `make data` puts it there), 60% of the 64 ")


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "--epochs must be an int >= 1, got 0"),
    (["--seeds", "0"], "--seeds must be an int >= 1, got 0"),
    (["--threads", "0"], "--threads must be an int >= 1, got 0"),
    (["--noise", "1.0"], "--noise must be in [0, 1), got 1.0"),
    (["--dataset", "mnist"], "argument --dataset: invalid choice: 'mnist'")])
def test_demo_rejects_bad_arguments_before_training(argv, message, capsys):
    with pytest.raises(SystemExit):
        demo.main(argv)
    assert message in capsys.readouterr().err


def test_quant_bench_shows_progress(capsys):
    from quant import bench
    bench.main(["--fp-epochs", "1", "--epochs", "1", "--optimizers", "SGD", "SAM"])
    out, err = capsys.readouterr()
    assert "| LSQ+SAM |" in out and "| 100% |" in out  # SAM's own speed relative to itself
    bar = err.splitlines()
    assert len(bar) == 10 and bar[-1].startswith("quant.bench [") and " 100% 44/44 " in bar[-1]
    assert bar[0].endswith("full precision (SGD)")
    assert bar[-1].endswith("W4A4 fine-tuning, optimizers in turn")
