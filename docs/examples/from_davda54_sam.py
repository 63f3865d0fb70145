"""Coming from davda54/sam: the same training step with arsam, then ARSAM in place of SAM.

A davda54/sam loop runs the passes itself and calls the optimizer between them:

    loss = criterion(model(x), y); loss.backward()        # pass 1: gradient at w
    optimizer.first_step(zero_grad=True)                  # w -> w + e
    criterion(model(x), y).backward()                     # pass 2: gradient at w + e
    optimizer.second_step(zero_grad=True)                 # back to w, base optimizer step

(or ``optimizer.step(closure)`` with a closure that runs forward *and* ``loss.backward()``), with
``enable_running_stats``/``disable_running_stats`` around the passes for BatchNorm. With arsam the
closure runs the forward only and returns the per-sample losses; the optimizer calls it for
every pass it needs, runs each backward itself and keeps BatchNorm statistics to the first pass
when given ``model=``. The constructor is the same (params, base optimizer class, rho, adaptive,
base optimizer arguments), so switching to ARSAM, which skips most second passes, is a change
of class name.

    python docs/examples/from_davda54_sam.py [--steps 200]
"""
import argparse

import torch
import torch.nn.functional as F

import arsam
from arsam.digits import load_digits_split
from arsam.nets import SmallCNN


def train(optimizer_class, steps, batch_size=32, **optimizer_args):
    """``steps`` steps on the digits with ``optimizer_class`` around SGD; returns the model and
    the number of steps that computed a SAM gradient."""
    torch.manual_seed(0)
    x_train, y_train, _, _ = load_digits_split(noise=0.6)
    model = SmallCNN(10, in_channels=1, width=64)
    optimizer = optimizer_class(model.parameters(), torch.optim.SGD, rho=0.3, lr=0.05,
                                momentum=0.9, weight_decay=5e-4,
                                model=model,  # replaces enable/disable_running_stats
                                **optimizer_args)
    sam_gradients = 0
    for step in range(steps):
        idx = torch.randint(len(y_train), (batch_size,))
        x, y = x_train[idx], y_train[idx]

        def closure(indices=None):  # forward only: no loss.backward(), no zero_grad()
            xb, yb = (x, y) if indices is None else (x[indices], y[indices])
            return F.cross_entropy(model(xb), yb, reduction="none")  # per-sample losses

        optimizer.step(closure)  # replaces first_step / second_step and both backward calls
        sam_gradients += optimizer.stats["sampled"]
    return model, sam_gradients


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args(argv)
    _, sam = train(arsam.SAM, args.steps)
    # ARSAM: plain SAM for start_iter steps (in plain PyTorch give start_iter= or
    # steps_per_epoch=; the mmengine wrappers take the epoch length from the train loop)
    _, ours = train(arsam.ARSAM, args.steps, start_iter=args.steps // 10)
    print(f"SAM computed a SAM gradient on {sam}/{args.steps} steps, ARSAM on {ours}/{args.steps}")
    return sam, ours


if __name__ == "__main__":
    main()
