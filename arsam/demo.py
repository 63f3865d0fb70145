"""``make demo``: what sharpness-aware training buys, and what ARSAM saves of its cost.

    python -m arsam.demo [--seeds 3] [--epochs 30] [--noise 0.6] [--threads 1]

scikit-learn's digits (offline) with 60 % of the training labels replaced by a wrong class, the
setting of ``arsam-bench accuracy`` where SAM clearly beats SGD: SmallCNN (width 64), batch 32,
30 epochs, SGD with lr 0.05, momentum 0.9, weight decay 5e-4 and cosine decay, ρ = 0.3.
For each seed SGD, SAM and ARSAM train from the same initialization on the same batches,
interleaved step by step so that a busy machine slows all three alike. Printed: test accuracy
(mean ± std over the seeds), SAM gradients per step (ARSAM's 3 warm-up epochs of SAM included),
and the speed relative to SAM (time of the optimizer steps, median over the seeds), then one
line on what they show. A progress bar runs on stderr. Runs on one CPU thread by default: this
small network gains nothing from more, and a shared machine loses much (``--threads``).
"""
from __future__ import annotations

import argparse
import itertools
import statistics
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence

import torch

from .bench.accuracy import evaluate
from .bench.common import build_optimizer, per_sample_closure, pick_device, timed, train_step
from .digits import load_digits_split
from .nets import SmallCNN
from .progress import Progress

METHODS = ("SGD", "SAM", "ARSAM")
BATCH_SIZE, LR, RHO, WIDTH = 32, 0.05, 0.3, 64  # arsam-bench accuracy's digits setting


def training(model: torch.nn.Module, opt: torch.optim.Optimizer, data: Sequence[torch.Tensor],
             epochs: int, batch_size: int, seed: int, result: dict) -> Iterator[None]:
    """Train ``model`` in place with ``opt`` (SGD or an arsam optimizer) under cosine decay,
    yielding after every step (callers interleave runs, :func:`interleave`); then fill
    ``result``: test accuracy (%), ``seconds`` of optimizer steps, ``images_per_s`` over them,
    ``sam_gradients`` (steps whose ``stats['sampled']`` is true) and ``steps``."""
    x_train, y_train, x_test, y_test = data
    per_epoch = len(y_train) // batch_size
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * per_epoch)
    generator = torch.Generator().manual_seed(seed)
    seconds, sam_gradients = 0.0, 0
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y_train), generator=generator).to(x_train.device)
        for b in range(per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size]
            closure = per_sample_closure(model, x_train[idx], y_train[idx])
            (_, stats), elapsed = timed(x_train.device, train_step, opt, closure)
            seconds += elapsed
            sam_gradients += bool(stats["sampled"])
            schedule.step()
            yield
    steps = epochs * per_epoch
    result.update(accuracy=evaluate(model, x_test, y_test), seconds=seconds,
                  images_per_s=steps * batch_size / seconds, sam_gradients=sam_gradients,
                  steps=steps)


def interleave(runs: Iterable[Iterator[None]],
               on_step: Callable[[], None] = lambda: None) -> None:
    """Advance the ``training`` generators in turn, one step each, to their end: a shared
    machine's load then weighs on every run alike, so their speed ratios hold within one run.
    ``on_step`` is called after each round."""
    for _ in itertools.zip_longest(*runs):
        on_step()


def run(seeds: int = 3, epochs: int = 30, noise: float = 0.6, device: Optional[str] = None,
        train_subset: Optional[int] = None) -> List[dict]:
    """Train SGD, SAM and ARSAM for each seed; returns one row per method (see :func:`table`).

    ``train_subset`` keeps the first n training samples (quick checks)."""
    device = pick_device(device)
    data = load_digits_split(noise=noise)
    if train_subset is not None:
        data = (data[0][:train_subset], data[1][:train_subset]) + tuple(data[2:])
    data = [t.to(device) for t in data]
    per_epoch = len(data[1]) // BATCH_SIZE
    results: Dict[str, List[dict]] = {name: [] for name in METHODS}
    with Progress(seeds * epochs * per_epoch, "demo") as bar:
        for seed in range(seeds):
            runs = []
            for name in METHODS:
                torch.manual_seed(seed)  # the same initialization for every method
                model = SmallCNN(10, in_channels=1, width=WIDTH).to(device)
                opt = build_optimizer(name, model, lr=LR, rho=RHO, steps_per_epoch=per_epoch,
                                      total_steps=epochs * per_epoch)
                results[name].append({})
                runs.append(training(model, opt, data, epochs, BATCH_SIZE, seed,
                                     results[name][-1]))
            interleave(runs, lambda: bar.update(note=f"seed {seed + 1}/{seeds}"))
    return summarize(results)


def summarize(results: Dict[str, List[dict]]) -> List[dict]:
    """Per method: accuracy mean and std (over seeds; std 0 for one seed), SAM gradients per
    step, and speed relative to SAM: the median over seeds of SAM's step time over the
    method's, both measured in the same interleaved run."""
    sam = results["SAM"]
    rows = []
    for name, runs in results.items():
        accuracy = [r["accuracy"] for r in runs]
        rows.append(dict(
            optimizer=name, seeds=len(runs), accuracy_mean=statistics.fmean(accuracy),
            accuracy_std=statistics.stdev(accuracy) if len(runs) > 1 else 0.0,
            sam_gradients_per_step=sum(r["sam_gradients"] for r in runs) / sum(
                r["steps"] for r in runs),
            speed_vs_sam=statistics.median(s["seconds"] / r["seconds"] for s, r in zip(sam, runs))))
    return rows


def table(rows: List[dict]) -> str:
    lines = [f"{'optimizer':<10}{'test accuracy %':>18}{'SAM gradients/step':>21}"
             f"{'speed vs SAM':>15}"]
    for r in rows:
        accuracy = f"{r['accuracy_mean']:.1f} ± {r['accuracy_std']:.1f}"
        lines.append(f"{r['optimizer']:<10}{accuracy:>18}{r['sam_gradients_per_step']:>21.2f}"
                     f"{r['speed_vs_sam']:>14.2f}x")
    return "\n".join(lines)


def conclusion(rows: List[dict]) -> str:
    """One line on what the numbers show, computed from them."""
    by = {r["optimizer"]: r for r in rows}
    sgd, sam, ours = by["SGD"], by["SAM"], by["ARSAM"]
    gain = sam["accuracy_mean"] - sgd["accuracy_mean"]
    if gain <= 0:
        return (f"SAM did not beat SGD here ({sam['accuracy_mean']:.1f} % vs "
                f"{sgd['accuracy_mean']:.1f} %), so there is no gain for ARSAM to keep: "
                "use more label noise or more epochs.")
    kept = (ours["accuracy_mean"] - sgd["accuracy_mean"]) / gain
    return (f"SAM beats SGD by {gain:.1f} points; ARSAM keeps {100 * kept:.0f} % of that gain "
            f"with {ours['sam_gradients_per_step']:.2f} SAM gradients per step, at "
            f"{ours['speed_vs_sam']:.2f}x SAM's speed.")


def main(argv: Optional[Sequence[str]] = None) -> List[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0].strip("`: "))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--noise", type=float, default=0.6,
                        help="fraction of training labels replaced by a wrong class")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (1: the fastest for this small network on a shared "
                        "machine)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when available")
    parser.add_argument("--train-subset", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, low, why in (("seeds", 1, ""), ("threads", 1, ""),
                           ("epochs", 4, " (ARSAM's first 3 epochs are its SAM warm-up)")):
        if getattr(args, name) < low:
            parser.error(f"--{name} must be an int >= {low}{why}, got {getattr(args, name)}")
    if not 0 <= args.noise < 1:
        parser.error(f"--noise must be in [0, 1), got {args.noise}")
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    train = args.train_subset or len(load_digits_split()[1])
    print(f"digits, {args.noise:.0%} of the {train} training labels wrong; SmallCNN (width "
          f"{WIDTH}), batch {BATCH_SIZE}, {args.epochs} epochs, "
          f"{args.seeds} seeds; {device.type}, {torch.get_num_threads()} thread(s)", flush=True)
    rows = run(args.seeds, args.epochs, args.noise, device.type, args.train_subset)
    print(table(rows))
    print(conclusion(rows))
    return rows


if __name__ == "__main__":
    main()
