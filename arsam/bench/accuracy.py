"""``arsam-bench accuracy``: test accuracy, training time and SAM gradients of every optimizer.

Symmetric label noise on the training labels (test labels clean) on: digits (scikit-learn,
offline; the quick toy) with SmallCNN (width 64) at ρ = 0.3, the setting where SAM beats SGD by
10-20 points; Fashion-MNIST (``make data``; ``--data-root`` or ``ARSAM_DATA``) with SmallResNet
(width 16, BatchNorm, 3 residual blocks), batch 64, lr 0.05, ρ = 0.2 (the demo's setting);
or CIFAR-10/100 with the CIFAR ResNet-18 when the data is under ``--data-root``.
For each seed every optimizer trains its own model from the same initialization on the same
batches, the optimizers interleaved step by step so that drift of the machine hits all alike.
Times are the wall time of the training steps only (evaluation excluded); images/s is the
training images processed per second of that time. "SAM gradients" counts the steps whose
``opt.stats['sampled']`` is true (vsam.txt's sampling number; every step for SAM, ESAM, KSAM;
ARSAM's warm-up included). "Gain kept" is (accuracy - SGD's) / (SAM's - SGD's) at the same
noise level, from the means over seeds; none where SAM does not beat SGD.
"""
import sys

import numpy as np
import torch

from .. import nets
from .. import fashion_mnist
from ..digits import load_digits_split, symmetric_noise
from .common import (OPTIMIZERS, build_optimizer, machine, method, per_sample_closure,
                     pick_device, timed, train_step)

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def cifar_split(root, dataset, noise, seed=0):
    """CIFAR-10/100 from ``root`` (torchvision layout, never downloaded) as normalized tensors,
    training labels with symmetric noise; (x_train, y_train, x_test, y_test)."""
    from torchvision import datasets
    cls = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[dataset]
    try:
        train, test = cls(root, train=True, download=False), cls(root, train=False, download=False)
    except RuntimeError as err:
        raise FileNotFoundError(
            f"--data-root {root!r} holds no {dataset} data in torchvision's layout "
            f"({cls.base_folder}/ from the official archive); download it there first") from err
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)

    def tensors(ds):
        return (torch.from_numpy(ds.data).permute(0, 3, 1, 2).float() / 255 - mean) / std
    classes = len(train.classes)
    y_train = symmetric_noise(torch.tensor(train.targets), noise, classes,
                              torch.Generator().manual_seed(seed))
    return tensors(train), y_train, tensors(test), torch.tensor(test.targets).long()


def crop_flip(x, generator):
    """Random 4-pixel-padded crop and horizontal flip of a batch (CIFAR augmentation)."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    dy, dx = torch.randint(9, (2,), generator=generator).tolist()
    x = padded[:, :, dy:dy + h, dx:dx + w]
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)


@torch.no_grad()
def evaluate(model, x, y, batch_size=1000):
    model.eval()
    correct = sum((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
                  for i in range(0, len(x), batch_size))
    model.train()
    return 100.0 * correct / len(x)


def trace_record(step, loss, stats):
    """One step of the trace, floats to 4 significant digits (the trace is for plots)."""
    record = dict(step=step, loss=loss.item(),
                  **{k: stats.get(k) for k in ("sampled", "sampling_rate", "psf_norm", "sgd_norm")})
    return {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in record.items()}


def train(optimizers, data, make_model, *, seed, epochs, batch_size, lr, rho, device,
          augment=None, trace=(), warmup_epochs=None):
    """Train one model per optimizer from the same initialization on the same batches, the
    optimizers interleaved step by step (so drift of the machine hits all alike).

    ``warmup_epochs`` (None: ARSAM's default) is ARSAM's warm-up of plain SAM, in epochs.
    Returns ``{name: record}`` and ``{name: per-step statistics}`` for the names in ``trace``.
    """
    warmup = {} if warmup_epochs is None else dict(warmup_epochs=warmup_epochs)
    x_tr, y_tr, x_te, y_te = (t.to(device) for t in data)
    per_epoch = len(x_tr) // batch_size
    runs = {}
    for name in optimizers:
        torch.manual_seed(seed)
        model = make_model().to(device).train()
        opt = build_optimizer(name, model, lr=lr, rho=rho, steps_per_epoch=per_epoch,
                              total_steps=epochs * per_epoch, **warmup)
        runs[name] = dict(model=model, opt=opt, seconds=0.0, gradients=0, curve=[], records=[],
                          schedule=torch.optim.lr_scheduler.CosineAnnealingLR(
                              getattr(opt, "base_optimizer", opt), T_max=epochs * per_epoch))
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x_tr), generator=generator).to(device)
        for b in range(per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size]
            x = x_tr[idx] if augment is None else augment(x_tr[idx], generator)
            for name, run in runs.items():
                closure = per_sample_closure(run["model"], x, y_tr[idx])
                (loss, stats), seconds = timed(device, train_step, run["opt"], closure)
                run["schedule"].step()
                run["seconds"] += seconds
                run["gradients"] += bool(stats["sampled"])
                run["rate"] = stats["sampling_rate"]
                if name in trace:
                    run["records"].append(trace_record(len(run["records"]) + 1, loss, stats))
        for run in runs.values():
            run["curve"].append([run["seconds"], evaluate(run["model"], x_te, y_te)])
    steps = epochs * per_epoch
    return ({name: dict(seed=seed, accuracy=r["curve"][-1][1], train_time_s=r["seconds"],
                        images_per_s=steps * batch_size / r["seconds"],
                        sam_gradients=r["gradients"], steps=steps,
                        final_sampling_rate=r["rate"], curve=r["curve"])
             for name, r in runs.items()},
            {name: r["records"] for name, r in runs.items() if name in trace})


def aggregate(name, noise, runs):
    acc = np.array([r["accuracy"] for r in runs])
    mean = lambda key: float(np.mean([r[key] for r in runs]))  # noqa: E731
    return dict(optimizer=name, noise=noise, seeds=len(runs), accuracy_mean=float(acc.mean()),
                accuracy_std=float(acc.std(ddof=1)) if len(runs) > 1 else 0.0,
                train_time_s=mean("train_time_s"), images_per_s=mean("images_per_s"),
                sam_gradients=mean("sam_gradients"), steps=runs[0]["steps"],
                sam_gradient_fraction=mean("sam_gradients") / runs[0]["steps"],
                final_sampling_rate=mean("final_sampling_rate"), runs=runs)


def gain_kept(rows):
    """Add to each row the share of SAM's gain over SGD it keeps: None without both, and None
    where SAM does not beat SGD (there is no gain to keep)."""
    by = {r["optimizer"]: r["accuracy_mean"] for r in rows}
    gain = by["SAM"] - by["SGD"] if "SAM" in by and "SGD" in by else 0.0
    for r in rows:
        r["gain_kept"] = (r["accuracy_mean"] - by["SGD"]) / gain if gain > 0 else None
    return rows


def speed_vs_sam(rows):
    """Add to each row its speed relative to SAM trained side by side in the same run: the
    median over seeds of SAM's training time / the row's (None without SAM)."""
    sam = next((r for r in rows if r["optimizer"] == "SAM"), None)
    for r in rows:
        r["speed_vs_sam"] = None if sam is None else float(np.median(
            [s["train_time_s"] / own["train_time_s"] for s, own in zip(sam["runs"], r["runs"])]))
    return rows


def run(noises=(0.4, 0.6), seeds=3, epochs=30, optimizers=OPTIMIZERS, batch_size=None,
        lr=None, rho=None, device=None, data_root=None, dataset="digits", train_subset=None,
        trace=True, test_subset=None, warmup_epochs=None):
    """The whole benchmark; returns (result, trace) ready for JSON.

    ``train_subset`` keeps n training samples (digits, CIFAR: the first n, for quick checks;
    Fashion-MNIST: n of a fixed seeded permutation, and ``test_subset`` likewise for the test
    set). ``warmup_epochs`` is ARSAM's warm-up (None: its default). The trace holds the
    per-step statistics of the ARSAM methods for seed 0 at every noise level.
    """
    device = pick_device(device)
    if test_subset is not None and dataset != "fashion-mnist":
        raise ValueError(f"--test-subset needs --dataset fashion-mnist, got {dataset!r}")
    if dataset == "fashion-mnist":
        make_model = lambda: nets.SmallResNet(10, in_channels=1, width=16)  # noqa: E731
        load = lambda noise: fashion_mnist.load_fashion_mnist_split(  # noqa: E731
            data_root, train_subset, test_subset, noise=noise, seed=0)
        augment = None  # the demo's setting (arsam.demo.SETTINGS), where SAM beats SGD
        batch_size, lr, rho = batch_size or 64, lr or 0.05, 0.2 if rho is None else rho
    elif dataset == "digits":
        make_model = lambda: nets.SmallCNN(10, in_channels=1, width=64)  # noqa: E731
        load, augment = (lambda noise: load_digits_split(noise=noise)), None
        batch_size, lr, rho = batch_size or 32, lr or 0.05, 0.3 if rho is None else rho
    else:
        if data_root is None:
            raise ValueError(f"--dataset {dataset} needs --data-root")
        classes = 100 if dataset == "cifar100" else 10
        make_model = lambda: nets.cifar_resnet18(classes)  # noqa: E731
        load, augment = (lambda noise: cifar_split(data_root, dataset, noise)), crop_flip
        batch_size, lr, rho = batch_size or 128, lr or 0.1, 0.05 if rho is None else rho
    results, traces = [], []
    for noise in noises:
        data = load(noise)
        if train_subset is not None and dataset != "fashion-mnist":
            data = (data[0][:train_subset], data[1][:train_subset]) + tuple(data[2:])
        if len(data[0]) < batch_size:
            raise ValueError(f"--batch-size must be at most the training set size "
                             f"({len(data[0])}), got {batch_size}")
        runs = {name: [] for name in optimizers}
        for seed in range(seeds):
            records, records_traced = train(
                optimizers, data, make_model, seed=seed, epochs=epochs, batch_size=batch_size,
                lr=lr, rho=rho, device=device, augment=augment, warmup_epochs=warmup_epochs,
                trace=[n for n in optimizers if method(n)[0] == "ARSAM"] if trace and seed == 0
                else ())
            print(f"accuracy: noise {noise:g}, seed {seed} done", file=sys.stderr, flush=True)
            for name in optimizers:
                runs[name].append(records[name])
            traces += [dict(optimizer=name, noise=noise, seed=seed, records=r)
                       for name, r in records_traced.items()]
        rows = [aggregate(name, noise, runs[name]) for name in optimizers]
        results += speed_vs_sam(gain_kept(rows))
    config = dict(dataset=dataset, noises=list(noises), seeds=seeds, epochs=epochs,
                  batch_size=batch_size, lr=lr, rho=rho, optimizers=list(optimizers),
                  train_subset=train_subset, test_subset=test_subset,
                  warmup_epochs=warmup_epochs, schedule="cosine", momentum=0.9, weight_decay=5e-4)
    return (dict(benchmark="accuracy", config=config, machine=machine(device), results=results),
            dict(source="arsam-bench accuracy", dataset=dataset, runs=traces))


def table(result):
    head = (f"{'method':<16}{'noise':>6}{'test acc %':>16}{'gain kept':>10}{'train s':>9}"
            f"{'img/s':>9}{'x SAM':>7}{'SAM grads/step':>15}")
    lines = [head, "-" * len(head)]
    for r in result["results"]:
        acc = f"{r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f}"
        kept = "-" if r["gain_kept"] is None else f"{100 * r['gain_kept'] + 0.0:.0f}%"
        speed = "-" if r.get("speed_vs_sam") is None else f"{r['speed_vs_sam']:.2f}"
        lines.append(f"{r['optimizer']:<16}{r['noise']:>6.1f}{acc:>16}{kept:>10}"
                     f"{r['train_time_s']:>9.2f}{r['images_per_s']:>9.0f}{speed:>7}"
                     f"{r['sam_gradient_fraction']:>15.3f}")
    return "\n".join(lines)
