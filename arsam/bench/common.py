"""What the benchmarks share: the optimizers compared, one training step for all of them, data."""
import math
import os
import platform
import time

import torch
import torch.nn.functional as F

import arsam

#: the methods compared, by label: (arsam.OPTIMIZERS name or "SGD", arguments: the papers'
#: settings; esam.txt, ksam.txt, vsam.txt Table 3's SAM-5 and LookSAM-5). Besides these,
#: ``ARSAM@<p>`` and ``ARSAM@<p>:<gamma>`` are ARSAM at the fixed, evenly spaced rate p with the
#: PSF reused with weight gamma^k (default 1), after one SAM step, and ``<label>-rho<r>`` is a
#: method at its own ρ = r instead of the run's (e.g. ``MSAM-rho3``, the ρ MarlonBecker/MSAM's
#: README runs MSAM with over SGD) (see :func:`method`).
METHODS = {
    "SGD": ("SGD", {}),
    "SAM": ("SAM", {}),
    "ESAM": ("ESAM", dict(beta=0.6, gamma=0.5)),
    "KSAM": ("KSAM", dict(k1=0.125, k2=0.5)),
    "PeriodicSAM-2": ("PeriodicSAM", dict(k=2)),
    "PeriodicSAM-5": ("PeriodicSAM", dict(k=5)),
    "LookSAM-5": ("LookSAM", dict(k=5)),
    "LookSAM-5-a0.2": ("LookSAM", dict(k=5, alpha=0.2)),  # MarlonBecker/MSAM's LookSAM alpha
    "MSAM": ("MSAM", {}),
    "ARSAM": ("ARSAM", {}),
    "ARSAM-vsam": ("ARSAM", dict(schedule="vsam")),
    "ARSAM-matched": ("ARSAM", dict(schedule="matched")),
    "ARSAM-fixed": ("ARSAM", dict(schedule="fixed")),
    # 'matched' as it was before issue 16 (docs/arsam.md), with only its floor raised, and with
    # a fixed average (the default before reuse_ratio)
    "ARSAM-matched-v1": ("ARSAM", dict(schedule="matched", min_rate=0.02, average=1.0,
                                       reuse_ratio=None)),
    "ARSAM-matched-min0.05": ("ARSAM", dict(schedule="matched", average=1.0, reuse_ratio=None)),
    "ARSAM-matched-avg0.1": ("ARSAM", dict(schedule="matched", reuse_ratio=None)),
}
#: compared by default, in this order
OPTIMIZERS = ("SGD", "SAM", "ESAM", "KSAM", "PeriodicSAM-5", "LookSAM-5", "MSAM", "ARSAM-vsam",
              "ARSAM")


def method(label):
    """(optimizer name, arguments) of a method label (see :data:`METHODS`); ValueError if
    unknown. ``<label>-rho<r>`` adds ``rho=r`` (r > 0) to the arguments of ``<label>``."""
    base, suffix, rho = label.rpartition("-rho")
    if suffix and base != "SGD" and "-rho" not in base and _known(base):
        try:
            value = float(rho)
        except ValueError:
            value = 0.0
        if 0 < value < math.inf:
            name, kwargs = method(base)
            return name, dict(kwargs, rho=value)
    if label in METHODS:
        name, kwargs = METHODS[label]
        return name, dict(kwargs)
    try:
        rate, _, gamma = label.partition("@")[2].partition(":")
        if not label.startswith("ARSAM@"):
            raise ValueError
        kwargs = dict(schedule="fixed", rate=float(rate), start_iter=1)
        if gamma:
            kwargs["gamma"] = float(gamma)
        return "ARSAM", kwargs
    except ValueError:
        raise ValueError(f"unknown method {label!r}: expected one of {', '.join(METHODS)}, "
                         "ARSAM@<rate> or ARSAM@<rate>:<gamma>, optionally followed by "
                         "-rho<rho> (rho > 0; not SGD)") from None


def parse_list(name, text, convert, ok, accepted):
    """A comma-separated option, each item converted and checked; ValueError names the option."""
    try:
        items = [convert(t) for t in text.split(",") if t.strip()]
    except ValueError:
        items = None
    if not items or not all(ok(v) for v in items):
        raise ValueError(f"{name} must be a comma-separated list of {accepted}, got {text!r}")
    return items


def _known(label):
    try:
        method(label)
    except ValueError:
        return False
    return True


def parse_optimizers(text):
    return parse_list("--optimizers", text, str.strip, _known,
                      f"methods from {', '.join(METHODS)}, ARSAM@<rate> or ARSAM@<rate>:<gamma>"
                      ", optionally followed by -rho<rho>")


def pick_device(name):
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be 'cpu' or 'cuda', got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but torch.cuda.is_available() is False")
    return torch.device(name)


def machine(device):
    info = dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
                torch=torch.__version__, python=platform.python_version(), device=device.type)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def build_optimizer(label, model, *, lr, rho=0.05, momentum=0.9, weight_decay=5e-4,
                    **overrides):
    """SGD or the arsam optimizer of a method label (:func:`method`) with SGD as base optimizer.

    ``overrides`` go to arsam optimizers: the run's length (``steps_per_epoch``,
    ``total_steps``) to every one, ``start_iter`` and ``warmup_epochs`` to ARSAM only (a
    fixed-rate label keeps its own start_iter); a ``-rho<r>`` label's ρ replaces ``rho``.
    """
    name, kwargs = method(label)
    rho = kwargs.pop("rho", rho)
    sgd = dict(lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "SGD":
        return torch.optim.SGD(model.parameters(), **sgd)
    if name != "ARSAM":
        overrides.pop("start_iter", None)
        overrides.pop("warmup_epochs", None)
    kwargs = {**overrides, **kwargs}  # a fixed-rate label's start_iter=1 wins
    return arsam.OPTIMIZERS[name](model.parameters(), torch.optim.SGD, rho=rho, model=model,
                                  **kwargs, **sgd)


def per_sample_closure(model, x, y):
    """The arsam closure protocol: forward only, per-sample cross-entropy, optional indices."""
    def closure(indices=None):
        if indices is None:
            return F.cross_entropy(model(x), y, reduction="none")
        return F.cross_entropy(model(x[indices]), y[indices], reduction="none")
    return closure


def train_step(opt, closure):
    """One step of any compared optimizer; returns (loss, stats) with arsam's stats keys.

    SGD runs the usual zero_grad / forward / backward / step; its stats say one forward and one
    backward of the batch and no SAM gradient.
    """
    if isinstance(opt, arsam.SharpnessAwareOptimizer):
        loss = opt.step(closure)
        return loss, dict(opt.stats)
    opt.zero_grad(set_to_none=True)
    losses = closure()
    losses.mean().backward()
    opt.step()
    n = len(losses)
    return losses.detach().mean(), dict(sampled=False, sampling_rate=0.0, forward_samples=n,
                                        backward_samples=n, psf_norm=None)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, fn, *args):
    """(fn(*args), seconds), synchronized on CUDA so that the time covers the work."""
    synchronize(device)
    start = time.perf_counter()
    out = fn(*args)
    synchronize(device)
    return out, time.perf_counter() - start
