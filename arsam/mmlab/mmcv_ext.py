"""A stand-in for mmcv's compiled ``mmcv._ext`` when only mmcv-lite is installed.

mmseg and mmpose import ``mmcv.ops`` at model-package import time, which loads the compiled
extension. With mmcv-lite that import fails (``ModuleNotFoundError: mmcv._ext``); :func:`install`
registers a stand-in whose functions raise NotImplementedError when called, so pure-PyTorch
models (FCN, DeepLabV3+, PSPNet, top-down heatmap pose models, mmpretrain's classifiers) import,
train and infer, and only compiled kernels fail, loudly, if a model uses one. With a full mmcv
build (a compiled ``_ext`` beside mmcv) nothing is installed and the real extension is used.

It belongs to the environment, not to ``import arsam``: ``make setup`` calls :func:`write_pth`,
which writes ``arsam_mmcv_ext.pth`` into the venv's site-packages. That file makes every interpreter of the venv load this module by its path (it
imports nothing but the standard library, and does not import mmcv) and call :func:`install`, so
``from mmseg.apis import init_model`` works in a script that never imports arsam. Importing
:mod:`arsam.mmlab` calls :func:`install` too (a no-op when the stand-in or a real extension is
there), for environments set up without the Makefile.
"""
import importlib.machinery
import importlib.util
import os
import sys
import types

PTH = "arsam_mmcv_ext.pth"
#: mmcv's informational kernels answer instead of raising (mmcv's collect_env calls them)
INFO = {"get_compiler_version": "n/a (mmcv-lite)", "get_compiling_cuda_version": "n/a (mmcv-lite)"}


def _missing(name):
    def kernel(*args, **kwargs):
        raise NotImplementedError(
            f"mmcv._ext.{name} is a compiled mmcv kernel, unavailable with mmcv-lite; install "
            "the full mmcv 2.1.0 to use it")
    kernel.__name__ = name
    return kernel


def _getattr(name):
    if name.startswith("__"):
        raise AttributeError(name)
    if name in INFO:
        return lambda: INFO[name]
    return _missing(name)


def needed():
    """Whether mmcv is installed without a compiled ``_ext``, judged from its files (mmcv itself
    is not imported: this runs at every interpreter start through the .pth file)."""
    spec = importlib.util.find_spec("mmcv")
    if spec is None or not spec.submodule_search_locations:
        return False
    suffixes = (*importlib.machinery.EXTENSION_SUFFIXES, ".py")
    return not any(os.path.exists(os.path.join(folder, "_ext" + suffix)) or
                   os.path.isdir(os.path.join(folder, "_ext"))
                   for folder in spec.submodule_search_locations for suffix in suffixes)


def install():
    """Register the stand-in as ``mmcv._ext`` when :func:`needed` (nothing else is touched)."""
    if "mmcv._ext" in sys.modules or not needed():
        return
    module = types.ModuleType("mmcv._ext", __doc__)
    # a spec without a loader: mmengine's mmcv_full_available() (pkgutil.find_loader) says False
    module.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", None)
    module.__getattr__ = _getattr
    sys.modules["mmcv._ext"] = module


def pth_line(path=__file__):
    """The .pth line that loads the module at ``path`` and calls :func:`install`."""
    return ("import importlib.util as u; s = u.spec_from_file_location('arsam_mmcv_ext', "
            f"{os.path.abspath(path)!r}); m = u.module_from_spec(s); s.loader.exec_module(m); "
            "m.install()\n")


def write_pth(site_dir=None):
    """Write (or, with a real ``mmcv._ext`` or no mmcv, remove) the .pth file in ``site_dir``
    (default: this interpreter's site-packages); returns what was done."""
    import sysconfig
    path = os.path.join(site_dir or sysconfig.get_paths()["purelib"], PTH)
    if not needed():
        if os.path.exists(path):
            os.remove(path)
        return f"no stand-in needed (no mmcv, or a compiled mmcv._ext): {path} absent"
    with open(path, "w") as f:
        f.write(pth_line())
    return f"wrote {path}"

