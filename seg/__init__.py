"""mmsegmentation with the sharpness-aware optimizers: the offline shapes dataset and the
per-sample losses of EncoderDecoder (for ESAM and K-SAM). Configs live in configs/seg/."""
import arsam.mmlab  # noqa: F401  (first: installs the mmcv._ext stand-in mmseg.models needs)

from .dataset import ShapesSegDataset, check_label_range  # noqa: E402
from .per_sample import encoder_decoder_per_sample_loss  # noqa: E402

__all__ = ["ShapesSegDataset", "check_label_range", "encoder_decoder_per_sample_loss"]
