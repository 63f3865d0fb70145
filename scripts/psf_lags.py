"""How long does a PSF stay useful? Lag statistics of the PSF over a SAM run (docs/arsam.md).

    python scripts/psf_lags.py [--noise 0.6] [--rho 0.3] [--epochs 30] [--width 64]
    python scripts/psf_lags.py --dataset fashion-mnist --rho 0.2 --epochs 15 --train-subset 3000

Trains SmallCNN on digits (or SmallResNet on a Fashion-MNIST subset, batch 64, lr 0.05; data
under $ARSAM_DATA) with ARSAM sampling every step (plain SAM, which stores each step's
PSF = g_SAM - g_SGD), then prints, per sixth of the run and lag d, over the pairs of steps
(t, t-d): beta = sum <PSF_t, PSF_t-d> / sum ‖PSF_t-d‖² (the least-squares coefficient of
predicting PSF_t by PSF_t-d), the mean cosine, and the relative error of reusing PSF_t-d whole,
sum ‖PSF_t - PSF_t-d‖² / sum ‖PSF_t‖²; and ‖PSF‖/‖g_SGD‖ (Eq. 11's r).
"""
import argparse

import torch
import torch.nn.functional as F

import arsam
from arsam import fashion_mnist
from arsam.digits import load_digits_split
from arsam.nets import SmallCNN, SmallResNet

LAGS = (1, 2, 5, 10, 20, 50)


def record(noise, rho, epochs, width, batch_size=32, seed=0, dataset="digits",
           train_subset=None, lr=0.05):
    """(PSFs [steps, n], ‖g_SGD‖ per step, test accuracy %) of a SAM run."""
    torch.manual_seed(seed)
    if dataset == "digits":
        x, y, x_test, y_test = load_digits_split(noise=noise)
        model = SmallCNN(10, in_channels=1, width=width)
    else:
        x, y, x_test, y_test = fashion_mnist.load_fashion_mnist_split(
            train_size=train_subset, test_size=2000, noise=noise, seed=0)
        model = SmallResNet(10, width=16)
    opt = arsam.ARSAM(model.parameters(), torch.optim.SGD, rho=rho, model=model,
                      schedule="fixed", rate=1.0, start_iter=0, lr=lr, momentum=0.9,
                      weight_decay=5e-4)
    per_epoch = len(y) // batch_size
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * per_epoch)
    g = torch.Generator().manual_seed(seed)
    psfs, sgd_norms = [], []
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g)
        for b in range(per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size]
            opt.step(lambda indices=None: F.cross_entropy(model(x[idx]), y[idx], reduction="none"))
            cosine.step()
            psfs.append(torch.cat([opt.state[p]["psf"].flatten() for p in model.parameters()]))
            sgd_norms.append(opt.stats["sgd_norm"])
    model.eval()
    with torch.no_grad():
        accuracy = 100 * (model(x_test).argmax(1) == y_test).float().mean().item()
    return torch.stack(psfs).double(), torch.tensor(sgd_norms, dtype=torch.float64), accuracy


def lag_statistics(psf, lag):
    """(beta, mean cosine, relative error of reusing PSF_t-d whole) over the pairs at ``lag``."""
    new, old = psf[lag:], psf[:-lag]
    dot = (new * old).sum(1)
    beta = (dot.sum() / (old * old).sum()).item()
    cosine = (dot / (new.norm(dim=1) * old.norm(dim=1))).mean().item()
    error = (((new - old) ** 2).sum() / (new * new).sum()).item()
    return beta, cosine, error


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--noise", type=float, default=0.6)
    p.add_argument("--rho", type=float, default=0.3)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--width", type=int, default=64, help="SmallCNN's width (digits)")
    p.add_argument("--dataset", choices=("digits", "fashion-mnist"), default="digits")
    p.add_argument("--train-subset", type=int, default=3000,
                   help="Fashion-MNIST: training images (a fixed seeded permutation)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    fashion = args.dataset == "fashion-mnist"
    psf, sgd_norms, accuracy = record(
        args.noise, args.rho, args.epochs, args.width, batch_size=64 if fashion else 32,
        dataset=args.dataset, train_subset=args.train_subset, lr=0.05)
    steps = len(psf)
    net = f"SmallResNet, {args.train_subset} images" if fashion else f"SmallCNN width {args.width}"
    print(f"SAM on {args.dataset}, label noise {args.noise:g}, rho {args.rho:g}, {net}, "
          f"{args.epochs} epochs ({steps} steps): test accuracy {accuracy:.2f} %")
    print("steps        r    " + "".join(f"  lag {d:<3} beta / cos / err   " for d in LAGS))
    part = steps // 6
    for start in range(0, 6 * part, part):
        chunk = psf[start:start + part]
        r = (chunk.norm(dim=1) / sgd_norms[start:start + part]).mean().item()
        cells = "".join("  {:>5.2f} / {:>5.2f} / {:>4.2f}       ".format(
            *lag_statistics(chunk, d)) for d in LAGS)
        print(f"{start:>4}-{start + part:<5} {r:5.2f}{cells}")


if __name__ == "__main__":
    main()
