"""A stand-in for mmcv's compiled ``mmcv._ext`` when only mmcv-lite is installed.

mmseg and mmpose import ``mmcv.ops`` at model-package import time, which loads the compiled
extension. With mmcv-lite that import fails; this module registers a stand-in whose functions
raise NotImplementedError when called, so pure-PyTorch models (FCN, DeepLabV3+, PSPNet, top-down
heatmap pose models) import and train, and only compiled kernels fail, loudly, if used.
With a full mmcv build the real extension is used and nothing is installed.
"""
import importlib.machinery
import importlib.util
import sys
import types


def _missing(name):
    def kernel(*args, **kwargs):
        raise NotImplementedError(
            f"mmcv._ext.{name} is a compiled mmcv kernel, unavailable with mmcv-lite; install "
            "the full mmcv 2.1.0 to use it")
    kernel.__name__ = name
    return kernel


def install():
    """Register the stand-in unless a real ``mmcv._ext`` can be imported."""
    if "mmcv._ext" in sys.modules:
        return
    try:
        if importlib.util.find_spec("mmcv._ext") is not None:
            return
    except ImportError:
        return  # no mmcv at all
    module = types.ModuleType("mmcv._ext", __doc__)
    # a spec without a loader: mmengine's mmcv_full_available() (pkgutil.find_loader) says False
    module.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", None)
    module.__getattr__ = _getattr
    sys.modules["mmcv._ext"] = module


def _getattr(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _missing(name)
