"""The offline demo: a small CNN on scikit-learn's digits with SGD, SAM and ARSAM.

    python -m arsam.demo [--epochs 30] [--noise 0.2] [--optimizers SGD SAM ARSAM]

Prints test accuracy, training images/s and how many SAM gradients each optimizer computed.
"""
import argparse
import time

import torch
from torch import nn

import arsam
from arsam.digits import load_digits_split
from arsam.nets import SmallCNN


def training(model, opt, data, epochs, batch_size, seed, result):
    """Train ``model`` in place with ``opt`` (a torch optimizer or an arsam one) and cosine decay,
    yielding after every step (callers interleave several runs); then fill ``result`` with the
    test accuracy (%), images/s over the optimizer steps, SAM gradients computed and steps."""
    x_train, y_train, x_test, y_test = data
    sharpness_aware = isinstance(opt, arsam.SharpnessAwareOptimizer)
    steps_per_epoch = len(y_train) // batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    sam_gradients, seen, elapsed = 0, 0, 0.0
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y_train), generator=g).to(x_train.device)
        for b in range(steps_per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size]
            xb, yb = x_train[idx], y_train[idx]

            def closure(indices=None):
                xi, yi = (xb, yb) if indices is None else (xb[indices], yb[indices])
                return nn.functional.cross_entropy(model(xi), yi, reduction="none")

            _sync(xb)
            start = time.perf_counter()
            if sharpness_aware:
                opt.step(closure)
                sam_gradients += opt.stats["sampled"]
            else:
                opt.zero_grad()
                closure().mean().backward()
                opt.step()
            _sync(xb)
            elapsed += time.perf_counter() - start
            seen += len(yb)
            sched.step()
            yield
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    result.update(accuracy=100 * accuracy, images_per_s=seen / elapsed,
                  sam_gradients=sam_gradients, steps=epochs * steps_per_epoch)


def _sync(tensor):
    if tensor.is_cuda:
        torch.cuda.synchronize(tensor.device)


def train(name, data, epochs, batch_size, seed, device):
    data = [t.to(device) for t in data]
    torch.manual_seed(seed)
    model = SmallCNN().to(device)
    hyper = dict(lr=0.05, momentum=0.9, weight_decay=5e-4)
    if name == "SGD":
        opt = torch.optim.SGD(model.parameters(), **hyper)
    else:
        extra = dict(start_iter=50) if name in ("VSAM", "ARSAM") else {}
        opt = arsam.OPTIMIZERS[name](model.parameters(), torch.optim.SGD, rho=0.05, model=model,
                                     **extra, **hyper)
    result = dict(optimizer=name)
    for _ in training(model, opt, data, epochs, batch_size, seed, result):
        pass
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--noise", type=float, default=0.0, help="symmetric label noise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--optimizers", nargs="+", default=["SGD", "SAM", "ARSAM"],
                        choices=["SGD", *arsam.OPTIMIZERS])
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = load_digits_split(seed=args.seed, noise=args.noise)
    print(f"digits: {len(data[1])} train / {len(data[3])} test, label noise {args.noise:.0%}, "
          f"{args.epochs} epochs, batch {args.batch_size}, {device}")
    print(f"{'optimizer':<12}{'test acc %':>11}{'images/s':>11}{'SAM grads':>11}{'steps':>7}")
    rows = []
    for name in args.optimizers:
        r = train(name, data, args.epochs, args.batch_size, args.seed, device)
        rows.append(r)
        print(f"{r['optimizer']:<12}{r['accuracy']:>11.2f}{r['images_per_s']:>11.0f}"
              f"{r['sam_gradients']:>11}{r['steps']:>7}")
    return rows


if __name__ == "__main__":
    main()
