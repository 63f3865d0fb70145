"""Train a classifier with ARSAM in plain PyTorch: data, model, closure, scheduler, checkpoints
and resume.

    python docs/examples/train_arsam.py                       # ~15 s on one CPU core
    python docs/examples/train_arsam.py --resume              # continue from the last checkpoint
    python docs/examples/train_arsam.py --resume work_dirs/train_arsam/epoch_10.pth

The data is scikit-learn's digits (offline) with 60 % of the training labels replaced by a wrong
class, where sharpness-aware training pays off; put your own Dataset and nn.Module in their
place. A resumed run ends with the same weights as an uninterrupted one, bit for bit on CPU:
the checkpoint holds the model, the optimizer (base optimizer state, ARSAM's stored PSF,
schedule and random generator), the scheduler and the epoch, and each epoch's batch order is
drawn from a generator seeded with the epoch.
"""
import argparse
import os

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import arsam
from arsam.digits import load_digits_split
from arsam.nets import SmallCNN


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--warmup-epochs", type=float, default=3,
                        help="epochs of plain SAM before ARSAM starts reusing (official: 3)")
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="cut every epoch short (quick checks); default: the whole data")
    parser.add_argument("--work-dir", default="work_dirs/train_arsam")
    parser.add_argument("--resume", nargs="?", const="last", metavar="CKPT",
                        help="a checkpoint, or the work dir's last one when no path is given")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)

    # Data: any Dataset; shuffling draws from `order`, seeded per epoch below.
    x_train, y_train, x_test, y_test = load_digits_split(noise=0.6)
    order = torch.Generator()
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=32, shuffle=True,
                        drop_last=True, generator=order)
    steps_per_epoch = min(args.steps_per_epoch or len(loader), len(loader))

    # Model and optimizer: ARSAM around SGD. model= lets it update BatchNorm statistics once per
    # step; steps_per_epoch= turns warmup_epochs into steps.
    model = SmallCNN(10, in_channels=1, width=64).to(device)
    opt = arsam.ARSAM(model.parameters(), torch.optim.SGD, rho=0.3, lr=0.05, momentum=0.9,
                      weight_decay=5e-4, model=model, warmup_epochs=args.warmup_epochs,
                      steps_per_epoch=steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * steps_per_epoch)

    start = 0
    if args.resume:
        path = os.path.join(args.work_dir, "last.pth") if args.resume == "last" else args.resume
        checkpoint = torch.load(path, map_location=device, weights_only=True)
        model.load_state_dict(checkpoint["model"])
        opt.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        start = checkpoint["epoch"]
        print(f"resumed from {path} after epoch {start}")

    os.makedirs(args.work_dir, exist_ok=True)
    for epoch in range(start, args.epochs):
        model.train()
        order.manual_seed(epoch)
        sam_gradients = 0
        for step, (x, y) in enumerate(loader):
            if step == steps_per_epoch:
                break
            x, y = x.to(device), y.to(device)

            def closure(indices=None):
                """Forward only, per-sample losses; ARSAM runs every backward it needs."""
                xb, yb = (x, y) if indices is None else (x[indices], y[indices])
                return F.cross_entropy(model(xb), yb, reduction="none")

            loss = opt.step(closure)
            sam_gradients += opt.stats["sampled"]
            scheduler.step()

        model.eval()
        with torch.no_grad():
            accuracy = (model(x_test.to(device)).argmax(1) == y_test.to(device)).float().mean()
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss.item():.3f}, test accuracy "
              f"{100 * accuracy:.1f} %, SAM gradients on {sam_gradients}/{steps_per_epoch} steps")
        checkpoint = dict(model=model.state_dict(), optimizer=opt.state_dict(),
                          scheduler=scheduler.state_dict(), epoch=epoch + 1)
        torch.save(checkpoint, os.path.join(args.work_dir, f"epoch_{epoch + 1}.pth"))
        torch.save(checkpoint, os.path.join(args.work_dir, "last.pth"))
    return model


if __name__ == "__main__":
    main()
