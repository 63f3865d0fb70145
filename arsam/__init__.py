"""arsam: SAM, ESAM, K-SAM, PeriodicSAM, vSAM and ARSAM for PyTorch, with mmengine wrappers."""
import importlib.util

from .engine import SharpnessAwareOptimizer, frozen_bn_stats
from .esam import ESAM
from .ksam import KSAM
from .periodic import PeriodicSAM
from .reuse import ARSAM, VSAM, PSFReuseSAM
from .sam import SAM
from .schedules import AutoregressiveSchedule, VariationSchedule

OPTIMIZERS = {cls.__name__: cls for cls in (SAM, ESAM, KSAM, PeriodicSAM, VSAM, ARSAM)}

__all__ = ["SharpnessAwareOptimizer", "frozen_bn_stats", "SAM", "ESAM", "KSAM", "PeriodicSAM",
           "PSFReuseSAM", "VSAM", "ARSAM", "VariationSchedule", "AutoregressiveSchedule",
           "OPTIMIZERS"]

if importlib.util.find_spec("mmengine") is not None:  # registers the optim wrappers
    from .mmlab import wrappers  # noqa: F401
