"""mmengine / OpenMMLab integration: thin adapters over the core optimizers."""
from .mmcv_ext import install as _install_mmcv_ext

_install_mmcv_ext()
