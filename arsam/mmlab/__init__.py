"""mmengine / OpenMMLab integration: thin adapters over the core optimizers."""
import importlib.util

from .mmcv_ext import install as _install_mmcv_ext

_install_mmcv_ext()
if importlib.util.find_spec("mmengine") is not None:
    from . import runner  # noqa: F401  (registers ArsamRunner and CheckBatchSizeHook)
