"""``make demo``: what sharpness-aware training buys, and what ARSAM saves of its cost.

    python -m arsam.demo [--dataset auto|fashion-mnist|digits] [--seeds 3] [--epochs N]
                         [--noise F] [--threads 1]

Fashion-MNIST when ``make data`` has put it in place (``arsam.fashion_mnist``), else
scikit-learn's digits, which ship with scikit-learn (``--dataset auto``, the default; the first
line printed says which). Both with 60 % of the training labels replaced by a wrong class, a
setting where SAM clearly beats SGD, SGD with momentum 0.9, weight decay 5e-4 and cosine decay:

* Fashion-MNIST: the first 3000 of a seeded permutation of the training images, 2000 test
  images, SmallResNet (width 16), batch 64, lr 0.05, 15 epochs, ρ = 0.2;
* digits: 1437 training images, SmallCNN (width 64), batch 32, lr 0.05, 30 epochs, ρ = 0.3
  (the digits setting of ``arsam-bench accuracy``).

ARSAM's warm-up of plain SAM is given explicitly as the first 10 % of the steps (``start_iter``),
whatever the optimizer's default. For each seed SGD, SAM and ARSAM train from the same
initialization on the same batches, interleaved step by step so that a busy machine slows all
three alike. Printed: test accuracy (mean ± std over the seeds), SAM gradients per step (the
warm-up included), and the speed relative to SAM (time of the optimizer steps, median over the
seeds), then one line on what they show. A progress bar runs on stderr. Runs on one CPU thread
by default: these small networks gain nothing from more, and a shared machine loses much
(``--threads``).
"""
from __future__ import annotations

import argparse
import itertools
import statistics
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence

import torch

from .bench.accuracy import evaluate
from .bench.common import build_optimizer, per_sample_closure, pick_device, timed, train_step
from . import fashion_mnist
from .digits import load_digits_split
from .nets import SmallCNN, SmallResNet
from .progress import Progress

METHODS = ("SGD", "SAM", "ARSAM")
#: per dataset: the net (class, width), batch size, lr, ρ, epochs, label noise, train/test sizes
SETTINGS = {
    "fashion-mnist": dict(net=SmallResNet, width=16, batch_size=64, lr=0.05, rho=0.2, epochs=15,
                          noise=0.6, train_size=3000, test_size=2000),
    "digits": dict(net=SmallCNN, width=64, batch_size=32, lr=0.05, rho=0.3, epochs=30,
                   noise=0.6, train_size=None, test_size=None),  # arsam-bench accuracy's
}
WARMUP = 0.1  # ARSAM's warm-up: this fraction of the run's steps, plain SAM


def pick_dataset(name: str = "auto") -> str:
    """``'fashion-mnist'`` when its files are in place (or asked for), else ``'digits'``."""
    if name == "auto":
        return "fashion-mnist" if fashion_mnist.available() else "digits"
    if name not in SETTINGS:
        raise ValueError(f"dataset must be 'auto' or one of {', '.join(SETTINGS)}, got {name!r}")
    return name


def load(dataset: str, noise: float, train_size: Optional[int] = None) -> List[torch.Tensor]:
    """``(x_train, y_train, x_test, y_test)`` of the demo's split of ``dataset``."""
    setting = SETTINGS[dataset]
    if dataset == "fashion-mnist":
        data = fashion_mnist.load_fashion_mnist_split(
            train_size=train_size or setting["train_size"], test_size=setting["test_size"],
            noise=noise)
    else:
        data = load_digits_split(noise=noise)
        if train_size is not None:
            data = (data[0][:train_size], data[1][:train_size]) + tuple(data[2:])
    return list(data)


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


def run(seeds: int = 3, epochs: Optional[int] = None, noise: Optional[float] = None,
        device: Optional[str] = None, train_subset: Optional[int] = None,
        dataset: str = "digits") -> List[dict]:
    """Train SGD, SAM and ARSAM for each seed; returns one row per method (see :func:`table`).

    ``epochs`` and ``noise`` default to the dataset's :data:`SETTINGS`; ``train_subset`` keeps
    n training samples (quick checks)."""
    setting = SETTINGS[dataset]
    epochs = setting["epochs"] if epochs is None else epochs
    noise = setting["noise"] if noise is None else noise
    device = pick_device(device)
    data = [t.to(device) for t in load(dataset, noise, train_subset)]
    batch_size = setting["batch_size"]
    per_epoch = len(data[1]) // batch_size
    total = epochs * per_epoch
    results: Dict[str, List[dict]] = {name: [] for name in METHODS}
    with Progress(seeds * total, "demo") as bar:
        for seed in range(seeds):
            runs = []
            for name in METHODS:
                torch.manual_seed(seed)  # the same initialization for every method
                model = setting["net"](10, in_channels=1, width=setting["width"]).to(device)
                opt = build_optimizer(name, model, lr=setting["lr"], rho=setting["rho"],
                                      steps_per_epoch=per_epoch, total_steps=total,
                                      start_iter=max(1, round(WARMUP * total)))
                results[name].append({})
                runs.append(training(model, opt, data, epochs, batch_size, seed,
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
    parser.add_argument("--dataset", default="auto", choices=("auto", *SETTINGS),
                        help="auto (default): Fashion-MNIST when `make data` has put it in "
                        "place, else digits")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None,
                        help="default: 15 on Fashion-MNIST, 30 on digits")
    parser.add_argument("--noise", type=float, default=0.6,
                        help="fraction of training labels replaced by a wrong class")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (1: the fastest for these small networks on a shared "
                        "machine)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="default: cuda when available")
    parser.add_argument("--train-subset", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("seeds", "epochs", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be an int >= 1, got {getattr(args, name)}")
    if not 0 <= args.noise < 1:
        parser.error(f"--noise must be in [0, 1), got {args.noise}")
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    dataset = pick_dataset(args.dataset)
    setting = SETTINGS[dataset]
    epochs = setting["epochs"] if args.epochs is None else args.epochs
    train = args.train_subset or setting["train_size"] or len(load_digits_split()[1])
    source = "Fashion-MNIST" if dataset == "fashion-mnist" else "digits"
    if args.dataset == "auto" and dataset == "digits":
        source += " (Fashion-MNIST is not in place: `make data` puts it there)"
    print(f"{source}, {args.noise:.0%} of the {train} training labels wrong; "
          f"{setting['net'].__name__} (width {setting['width']}), batch {setting['batch_size']}, "
          f"rho {setting['rho']}, {epochs} epochs (ARSAM: the first {WARMUP:.0%} SAM), "
          f"{args.seeds} seeds; {device.type}, {torch.get_num_threads()} thread(s)", flush=True)
    rows = run(args.seeds, epochs, args.noise, device.type, args.train_subset, dataset)
    print(table(rows))
    print(conclusion(rows))
    return rows


if __name__ == "__main__":
    main()
