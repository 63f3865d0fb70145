"""How long does a PSF stay useful? Lag statistics of the PSF over a SAM run (docs/arsam.md).

    python scripts/psf_lags.py [--noise 0.6] [--rho 0.3] [--epochs 30] [--width 64]

Trains SmallCNN on digits with ARSAM sampling every step (plain SAM, which stores each step's
PSF = g_SAM - g_SGD), then prints, per sixth of the run and lag d, over the pairs of steps
(t, t-d): beta = sum <PSF_t, PSF_t-d> / sum ‖PSF_t-d‖² (the least-squares coefficient of
predicting PSF_t by PSF_t-d), the mean cosine, and the relative error of reusing PSF_t-d whole,
sum ‖PSF_t - PSF_t-d‖² / sum ‖PSF_t‖²; and ‖PSF‖/‖g_SGD‖ (Eq. 11's r).
"""
import argparse

import torch
import torch.nn.functional as F

import arsam
from arsam.digits import load_digits_split
from arsam.nets import SmallCNN

LAGS = (1, 2, 5, 10, 20, 50)


def record(noise, rho, epochs, width, batch_size=32, seed=0):
    """(PSFs [steps, n], ‖g_SGD‖ per step, test accuracy %) of a SAM run."""
    x, y, x_test, y_test = load_digits_split(noise=noise)
    torch.manual_seed(seed)
    model = SmallCNN(10, in_channels=1, width=width)
    opt = arsam.ARSAM(model.parameters(), torch.optim.SGD, rho=rho, model=model,
                      schedule="fixed", rate=1.0, start_iter=0, lr=0.05, momentum=0.9,
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
    p.add_argument("--width", type=int, default=64)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    psf, sgd_norms, accuracy = record(args.noise, args.rho, args.epochs, args.width)
    steps = len(psf)
    print(f"SAM on digits, label noise {args.noise:g}, rho {args.rho:g}, SmallCNN width "
          f"{args.width}, {args.epochs} epochs ({steps} steps): test accuracy {accuracy:.2f} %")
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
