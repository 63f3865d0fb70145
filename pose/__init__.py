"""mmpose with the sharpness-aware optimizers: the offline stick-figure dataset and the
per-sample losses of TopdownPoseEstimator (for ESAM and K-SAM). Configs live in configs/pose/."""
import arsam.mmlab  # noqa: F401  (first: installs the mmcv._ext stand-in mmpose.models needs)

from .dataset import StickFigureDataset  # noqa: E402
from .per_sample import topdown_per_sample_loss  # noqa: E402

__all__ = ["StickFigureDataset", "topdown_per_sample_loss"]
