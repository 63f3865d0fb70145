"""What the benchmarks share: the optimizers compared, one training step for all of them, data."""
import os
import platform
import time

import torch
import torch.nn.functional as F

import arsam

#: compared in this order; SGD is torch.optim.SGD itself, the rest come from arsam.OPTIMIZERS
OPTIMIZERS = ("SGD", "SAM", "ESAM", "KSAM", "PeriodicSAM", "VSAM", "ARSAM")
#: the paper settings used for each variant (esam.txt, ksam.txt, vsam.txt Table 3's SAM-5, vsam.txt)
VARIANT_KWARGS = {"SAM": {}, "ESAM": dict(beta=0.6, gamma=0.5), "KSAM": dict(k1=0.125, k2=0.5),
                  "PeriodicSAM": dict(k=5), "VSAM": {}, "ARSAM": {}}
REUSE = ("VSAM", "ARSAM")


def parse_list(name, text, convert, ok, accepted):
    """A comma-separated option, each item converted and checked; ValueError names the option."""
    try:
        items = [convert(t) for t in text.split(",") if t.strip()]
    except ValueError:
        items = None
    if not items or not all(ok(v) for v in items):
        raise ValueError(f"{name} must be a comma-separated list of {accepted}, got {text!r}")
    return items


def parse_optimizers(text):
    return parse_list("--optimizers", text, str.strip, lambda n: n in OPTIMIZERS,
                      f"names from {', '.join(OPTIMIZERS)}")


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


def build_optimizer(name, model, *, lr, rho=0.05, momentum=0.9, weight_decay=5e-4, rate=None,
                    **schedule):
    """SGD or an arsam optimizer with SGD as base optimizer and the paper settings.

    ``rate`` fixes the sampling rate of VSAM/ARSAM (benchmark only): the schedule's sample count
    starts at ``rate``·N and α = 0 keeps it there; step 1 is plain SAM so that a PSF exists.
    ``schedule`` overrides other schedule arguments (e.g. ``start_iter``).
    """
    sgd = dict(lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "SGD":
        return torch.optim.SGD(model.parameters(), **sgd)
    kwargs = dict(VARIANT_KWARGS[name])
    if rate is not None:
        if name not in REUSE:
            raise ValueError(f"rate applies to {' and '.join(REUSE)} only, got {name}")
        kwargs.update(alpha=0.0, init_rate=rate, max_rate=max(rate, 0.8), start_iter=1)
    kwargs.update(schedule)
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
