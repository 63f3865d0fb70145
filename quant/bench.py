"""Benchmark: LSQ W4A4 fine-tuning on the offline digits with SGD and the sharpness-aware variants.

    python -m quant.bench [--optimizers SGD SAM VSAM ARSAM] [--fp-epochs 30] [--epochs 15]

The flow of vsam.txt Sec. 4.5: a full-precision SmallCNN trained with SGD, then for each
optimizer the same checkpoint converted with ``quantize_model`` (W4A4, first/last 8 bits) and
fine-tuned with step sizes out of the ascent, the optimizers' runs interleaved step by step.
Prints a markdown table: test accuracy, training
images/s (optimizer steps only) and their ratio to LSQ+SAM measured in the same run, and the
fraction of steps that computed a SAM gradient.
"""
import argparse
import copy
import itertools
import time

import torch
import torch.nn.functional as F

import arsam
from arsam.digits import load_digits_split
from arsam.nets import SmallCNN

from .convert import quantize_model
from .optim import lsq_param_groups

HYPER = dict(momentum=0.9, weight_decay=5e-4)
EXTRA = dict(VSAM=dict(start_iter=50), ARSAM=dict(start_iter=50))


def training(model, name, data, epochs, lr, batch_size, seed, result):
    """Train ``model`` in place, yielding after every step; then fill ``result`` with the test
    accuracy (%), images/s over the optimizer steps and the fraction of SAM steps."""
    x_train, y_train, x_test, y_test = data
    groups = lsq_param_groups(model)
    if name == "SGD":
        opt = torch.optim.SGD(groups, lr=lr, **HYPER)
    else:
        opt = arsam.OPTIMIZERS[name](groups, torch.optim.SGD, rho=0.05, lr=lr, model=model,
                                     **EXTRA.get(name, {}), **HYPER)
    steps_per_epoch = len(y_train) // batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    sampled, seen, elapsed = 0, 0, 0.0
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y_train), generator=g).to(x_train.device)
        for b in range(steps_per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size]
            xb, yb = x_train[idx], y_train[idx]

            def closure(indices=None):
                xi, yi = (xb, yb) if indices is None else (xb[indices], yb[indices])
                return F.cross_entropy(model(xi), yi, reduction="none")

            _sync(xb)
            start = time.perf_counter()
            if name == "SGD":
                opt.zero_grad()
                closure().mean().backward()
                opt.step()
            else:
                opt.step(closure)
                sampled += opt.stats["sampled"]
            _sync(xb)
            elapsed += time.perf_counter() - start
            seen += len(yb)
            sched.step()
            yield
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    result.update(accuracy=100 * accuracy, images_per_s=seen / elapsed,
                  sam_steps=sampled / (epochs * steps_per_epoch))


def run(runs):
    """Advance the ``training`` generators in turn, one step each: a shared machine's load
    then weighs on every optimizer alike, so their speed ratios hold within one run."""
    for _ in itertools.zip_longest(*runs):
        pass


def _sync(tensor):
    if tensor.is_cuda:
        torch.cuda.synchronize(tensor.device)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--optimizers", nargs="+", default=["SGD", "SAM", "VSAM", "ARSAM"],
                        choices=["SGD", *arsam.OPTIMIZERS])
    parser.add_argument("--fp-epochs", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = [t.to(device) for t in load_digits_split()]
    torch.manual_seed(args.seed)
    fp, fp_result = SmallCNN(width=args.width).to(device), {}
    run([training(fp, "SGD", data, args.fp_epochs, 0.05, args.batch_size, args.seed, fp_result)])
    rows, runs = {name: {} for name in args.optimizers}, []
    for name in args.optimizers:
        torch.manual_seed(args.seed)
        model = quantize_model(copy.deepcopy(fp))
        runs.append(training(model, name, data, args.epochs, 0.01, args.batch_size, args.seed,
                             rows[name]))
    run(runs)
    reference = rows["SAM"]["images_per_s"] if "SAM" in rows else None
    print(f"device: {device}, threads: {torch.get_num_threads()}, SmallCNN width {args.width}, "
          f"{args.epochs} epochs of W4A4 fine-tuning after {args.fp_epochs} full-precision")
    print("| method | test acc. % | images/s | vs LSQ+SAM | SAM steps |")
    print("|---|---|---|---|---|")
    print(f"| Full prec. (SGD) | {fp_result['accuracy']:.2f} | | | |")
    for name, row in rows.items():
        speed = row["images_per_s"]
        ratio = f"{100 * speed / reference:.0f}%" if reference else "n/a"
        print(f"| LSQ+{name} | {row['accuracy']:.2f} | {speed:.0f} | {ratio} | "
              f"{row['sam_steps']:.2f} |")


if __name__ == "__main__":
    main()
