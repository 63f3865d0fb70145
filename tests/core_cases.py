"""The core optimizers the core tests run, ARSAM under each of its schedules, at settings that
reach their stored state (momentum, PSF or g_v, schedule) within a few steps."""
import torch
import torch.nn.functional as F
from torch import nn

import arsam

CASES = {"SAM": ("SAM", {}), "ESAM": ("ESAM", dict(beta=0.5, gamma=0.5)), "KSAM": ("KSAM", {}),
         "PeriodicSAM": ("PeriodicSAM", dict(k=2)), "LookSAM": ("LookSAM", dict(k=2)),
         "MSAM": ("MSAM", {}),
         "ARSAM-vsam": ("ARSAM", dict(schedule="vsam", start_iter=2, window=4, slices=2,
                                      init_samples=2)),
         "ARSAM-matched": ("ARSAM", dict(schedule="matched", start_iter=2)),
         "ARSAM-fixed": ("ARSAM", dict(schedule="fixed", rate=0.5, start_iter=2))}
ALL = list(CASES)
#: closure passes of a step that computes a SAM gradient
PASSES = {name: 3 if name in ("KSAM", "ESAM") else 1 if name == "MSAM" else 2 for name in ALL}


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


def net(seed=0):
    """A small MLP with BatchNorm: several parameter tensors, running statistics."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3))


def data(step, n=16):
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


def closure_for(model, x, y, edit=None):
    """Per-sample cross-entropy; ``edit(losses, pass_number, indices)`` may replace a pass's."""
    calls = []

    def closure(indices=None):
        calls.append(indices)
        xi, yi = (x, y) if indices is None else (x[indices], y[indices])
        losses = F.cross_entropy(model(xi), yi, reduction="none")
        return losses if edit is None else edit(losses, len(calls), indices)
    return closure


def assert_same_state(a, b, where="state_dict"):
    """Two (optimizer) state dicts equal bit for bit: the same keys, tensors, numbers."""
    assert type(a) is type(b) or (torch.is_tensor(a) and torch.is_tensor(b)), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif torch.is_tensor(a):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True, msg=where)
    else:
        assert a == b or (a != a and b != b), where  # NaN == NaN
