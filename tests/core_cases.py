"""The core optimizers the core tests run, ARSAM under each of its schedules, at settings that
reach their stored state (momentum, PSF or g_v, schedule) within a few steps."""
import torch

import arsam

CASES = {"SAM": ("SAM", {}), "ESAM": ("ESAM", dict(beta=0.5, gamma=0.5)), "KSAM": ("KSAM", {}),
         "PeriodicSAM": ("PeriodicSAM", dict(k=2)), "LookSAM": ("LookSAM", dict(k=2)),
         "ARSAM-vsam": ("ARSAM", dict(schedule="vsam", start_iter=2, window=4, slices=2,
                                      init_samples=2)),
         "ARSAM-matched": ("ARSAM", dict(schedule="matched", start_iter=2)),
         "ARSAM-fixed": ("ARSAM", dict(schedule="fixed", rate=0.5, start_iter=2))}
ALL = list(CASES)
#: closure passes of a step that computes a SAM gradient
PASSES = {name: 3 if name in ("KSAM", "ESAM") else 2 for name in ALL}


def sam_every_step(name):
    """Settings under which every one of the first 10 steps computes a SAM gradient."""
    if name.startswith("ARSAM"):
        return dict(start_iter=10)
    return dict(k=1) if name in ("PeriodicSAM", "LookSAM") else {}


def make(name, params, **kwargs):
    """The optimizer of case ``name`` on ``params`` (SGD base: lr 0.1, momentum 0.9)."""
    cls, settings = CASES[name]
    return arsam.OPTIMIZERS[cls](params, torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9,
                                 **{**settings, **kwargs})
