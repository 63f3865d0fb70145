"""arsam: SAM, ESAM, K-SAM, PeriodicSAM, LookSAM, MSAM and ARSAM/vSAM for PyTorch, with mmengine
wrappers. ``python -m arsam`` prints the version, the environment and what is registered."""
import importlib.metadata
import importlib.util

from .engine import SharpnessAwareOptimizer, frozen_bn_stats
from .esam import ESAM
from .ksam import KSAM
from .periodic import PeriodicSAM
from .looksam import LookSAM
from .msam import MSAM
from .reuse import ARSAM, VSAM
from .sam import SAM
from .schedules import FixedSchedule, MatchedSchedule, Schedule, VSAMSchedule

try:
    __version__ = importlib.metadata.version("arsam")  # pyproject.toml's, as installed
except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"

#: every optimizer by name; VSAM is ARSAM under the name of its first paper (vsam.txt)
OPTIMIZERS = dict(SAM=SAM, ESAM=ESAM, KSAM=KSAM, PeriodicSAM=PeriodicSAM, LookSAM=LookSAM,
                  MSAM=MSAM, VSAM=VSAM, ARSAM=ARSAM)

__all__ = ["__version__", "SharpnessAwareOptimizer", "frozen_bn_stats", "SAM", "ESAM", "KSAM",
           "PeriodicSAM", "LookSAM", "MSAM", "VSAM", "ARSAM", "Schedule", "MatchedSchedule",
           "VSAMSchedule", "FixedSchedule", "OPTIMIZERS"]

if importlib.util.find_spec("mmengine") is not None:  # registers the optim wrappers
    from .mmlab import wrappers  # noqa: F401
