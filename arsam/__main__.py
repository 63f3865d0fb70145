"""``python -m arsam``: the version, the environment and what arsam registers.

Prints arsam's version (and where it is imported from), Python's, those of torch, torchvision,
mmengine, mmcv, mmseg, mmpose and mmpretrain (read from their installed metadata, nothing
imported), the device training would use, the optimizers (``arsam.OPTIMIZERS``), ARSAM's
schedules and the mmengine optim wrappers registered by ``import arsam``.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import List, Optional

#: (name shown, distribution): mmcv-lite installs the module mmcv under another distribution name
PACKAGES = (("torch", ("torch",)), ("torchvision", ("torchvision",)),
            ("mmengine", ("mmengine",)), ("mmcv", ("mmcv", "mmcv-lite")),
            ("mmseg", ("mmsegmentation",)), ("mmpose", ("mmpose",)),
            ("mmpretrain", ("mmpretrain",)))


def version_of(distributions) -> Optional[str]:
    """The installed version of the first of ``distributions`` found, else None."""
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def device() -> str:
    import torch
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        return f"cuda ({torch.cuda.get_device_name(0)}{f', {count} GPUs' if count > 1 else ''})"
    return f"cpu ({torch.get_num_threads()} threads; no CUDA device)"


def wrappers() -> List[str]:
    """Names under which arsam's optim wrappers are registered in mmengine's OPTIM_WRAPPERS,
    each alias as ``name (= target)``; empty without mmengine."""
    if version_of(("mmengine",)) is None:
        return []
    from mmengine.registry import OPTIM_WRAPPERS
    ours = {name: cls for name, cls in OPTIM_WRAPPERS.module_dict.items()
            if cls.__module__.startswith("arsam.")}
    return [name if cls.__name__ == name else f"{name} (= {cls.__name__})"
            for name, cls in ours.items()]


def report() -> str:
    import arsam
    from arsam.schedules import SCHEDULES
    versions = ", ".join(f"{shown} {version_of(dists) or 'not installed'}"
                         for shown, dists in PACKAGES)
    optimizers = ", ".join(name if cls.__name__ == name else f"{name} (= {cls.__name__})"
                           for name, cls in arsam.OPTIMIZERS.items())
    lines = [f"arsam {arsam.__version__} ({os.path.dirname(arsam.__file__)})",
             f"python {platform.python_version()} ({sys.executable})",
             versions,
             f"device: {device()}",
             f"optimizers: {optimizers}",
             f"ARSAM schedules: {', '.join(SCHEDULES)}",
             f"mmengine optim wrappers: {', '.join(wrappers()) or 'none (mmengine not installed)'}"]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
