"""Benchmark: LSQ W4A4 fine-tuning on the offline digits with SGD and the sharpness-aware variants.

    python -m quant.bench [--optimizers SGD SAM VSAM ARSAM] [--fp-epochs 30] [--epochs 15]

The flow of vsam.txt Sec. 4.5: a full-precision SmallCNN trained with SGD, then for each
optimizer the same checkpoint converted with ``quantize_model`` (W4A4, first/last 8 bits) and
fine-tuned with step sizes out of the ascent, the optimizers' runs interleaved step by step.
Prints a markdown table: test accuracy, training
images/s (optimizer steps only) and their ratio to LSQ+SAM measured in the same run, and the
fraction of steps that computed a SAM gradient. A progress bar runs on stderr.
"""
import argparse
import copy

import torch

import arsam
from arsam import demo
from arsam.digits import load_digits_split
from arsam.nets import SmallCNN
from arsam.progress import Progress

from .convert import quantize_model
from .optim import lsq_param_groups

HYPER = dict(momentum=0.9, weight_decay=5e-4)
#: VSAM is ARSAM with the paper's schedule; both run 50 steps of plain SAM first
EXTRA = dict(VSAM=dict(schedule="vsam", start_iter=50), ARSAM=dict(start_iter=50))


def training(model, name, data, epochs, lr, batch_size, seed, result):
    """Fine-tune ``model`` with optimizer ``name`` (LSQ step sizes out of the ascent), yielding
    after every step; then fill ``result`` as :func:`arsam.demo.training` does, plus
    ``sam_steps``, the fraction of steps that computed a SAM gradient."""
    groups = lsq_param_groups(model)
    if name == "SGD":
        opt = torch.optim.SGD(groups, lr=lr, **HYPER)
    else:
        opt = arsam.OPTIMIZERS[name](groups, torch.optim.SGD, rho=0.05, lr=lr, model=model,
                                     **EXTRA.get(name, {}), **HYPER)
    yield from demo.training(model, opt, data, epochs, batch_size, seed, result)
    result["sam_steps"] = result["sam_gradients"] / result["steps"]


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
    per_epoch = len(data[1]) // args.batch_size
    with Progress((args.fp_epochs + args.epochs) * per_epoch, "quant.bench") as bar:
        torch.manual_seed(args.seed)
        fp, fp_result = SmallCNN(width=args.width).to(device), {}
        demo.interleave([training(fp, "SGD", data, args.fp_epochs, 0.05, args.batch_size,
                                  args.seed, fp_result)],
                        lambda: bar.update(note="full precision (SGD)"))
        rows, runs = {name: {} for name in args.optimizers}, []
        for name in args.optimizers:
            torch.manual_seed(args.seed)
            model = quantize_model(copy.deepcopy(fp))
            runs.append(training(model, name, data, args.epochs, 0.01, args.batch_size,
                                 args.seed, rows[name]))
        demo.interleave(runs, lambda: bar.update(note="W4A4 fine-tuning, optimizers in turn"))
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
