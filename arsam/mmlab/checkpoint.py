"""Checkpoint loading that runs no code from the file: weights-only, mmengine's types allowed.

torch >= 2.6 loads weights-only by default: tensors, containers and numbers, no other object
(an object of a pickle is built by calling something the file names, so unpickling a file fully
can run any code it holds). An mmengine checkpoint holds, besides those, the message hub's
``HistoryBuffer``s (numbers in numpy arrays, and their statistics methods, pickled as
``getattr(HistoryBuffer, 'mean')``) and numpy scalars. :data:`SAFE_GLOBALS` admits exactly these:
``HistoryBuffer`` whose state is checked (its history and nothing else; statistics methods only
its own), a ``getattr`` that returns HistoryBuffer's four statistics methods and refuses
anything else, and numpy's array and scalar reconstruction for numeric dtypes.

Nothing is installed at import: importing arsam leaves mmengine's loaders and torch's settings
as they are. :func:`checkpoint_loading` scopes the policy to the loads inside it, and
:class:`arsam.mmlab.runner.ArsamRunner` (the Runner of ``arsam-train``) makes every load it runs
inside it. Full unpickling is an explicit opt-in, ``unsafe_load_pickle=True``.
"""
import contextlib
import contextvars
import os
import pickle

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from ..engine import check_arg

_STATISTICS = ("min", "max", "current", "mean")  # HistoryBuffer's own statistics methods
_HISTORY = {"max_length": int, "_log_history": np.ndarray, "_count_history": np.ndarray}


class _CheckedHistoryBuffer(HistoryBuffer):
    """What a checkpoint's ``HistoryBuffer`` unpickles as: a HistoryBuffer whose state is checked.

    HistoryBuffer's own ``__setstate__`` merges the file's statistics methods into a dict of
    the class; here they must be HistoryBuffer's own, and the rest must be the history.
    """

    def __setstate__(self, state):
        state = dict(state)
        methods = state.pop("statistics_methods", {})
        if (set(state) != set(_HISTORY) or not isinstance(methods, dict)
                or any(not isinstance(state[k], t) for k, t in _HISTORY.items())
                or any(k not in _STATISTICS or v is not getattr(HistoryBuffer, k)
                       for k, v in methods.items())):
            raise pickle.UnpicklingError(
                "a HistoryBuffer in the checkpoint holds more than its history (keys "
                f"{sorted(state)}, statistics methods {sorted(methods)}); refused")
        self.__class__ = HistoryBuffer
        self._set_default_statistics()
        self.__dict__.update(state)


def _statistics_method(cls, name):
    """``builtins.getattr`` for the loader: HistoryBuffer's statistics methods, nothing else."""
    if cls is not _CheckedHistoryBuffer or name not in _STATISTICS:
        raise pickle.UnpicklingError(f"getattr({cls!r}, {name!r}) in the checkpoint; refused "
                                     f"(only HistoryBuffer's {', '.join(_STATISTICS)})")
    return getattr(HistoryBuffer, name)


def _numpy_globals():
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # found from pickles: numpy 1 and 2
    scalar = np.float64(0).__reduce__()[0]
    dtypes = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
              np.uint32, np.uint64, np.float16, np.float32, np.float64]
    return ([np.ndarray, np.dtype] + [type(np.dtype(t)) for t in dtypes]
            + [(f, f"numpy.{core}.multiarray.{f.__name__}")
               for f in (reconstruct, scalar) for core in ("core", "_core")])


#: exactly the globals an mmengine checkpoint needs beyond torch's weights-only defaults
SAFE_GLOBALS = [(_CheckedHistoryBuffer, "mmengine.logging.history_buffer.HistoryBuffer"),
                (_statistics_method, "builtins.getattr")] + _numpy_globals()

_FORCE = {False: "TORCH_FORCE_WEIGHTS_ONLY_LOAD", True: "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
_unsafe = contextvars.ContextVar("arsam_unsafe_load_pickle", default=False)


@contextlib.contextmanager
def checkpoint_loading(unsafe_load_pickle=None):
    """Every ``torch.load`` inside loads weights-only, with :data:`SAFE_GLOBALS` allowed.

    Weights-only even where the caller asks for more (mmengine's ``http://``,
    ``torchvision://``, ``open-mmlab://`` and ``mmcls://`` loaders pass ``weights_only=False``
    to ``torch.hub``), through torch's ``TORCH_FORCE_WEIGHTS_ONLY_LOAD``.

    Args:
        unsafe_load_pickle: True unpickles fully instead (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``):
            a file can then run any code; only for files you made or trust completely. None:
            the enclosing scope's choice (weights-only outside any).

    The settings are the process's (environment variables, torch's safe globals) while the
    scope lasts: meant for the thread that loads, not for loads in other threads meanwhile.
    """
    check_arg("unsafe_load_pickle", unsafe_load_pickle,
              unsafe_load_pickle is None or isinstance(unsafe_load_pickle, bool), "None or a bool")
    unsafe = _unsafe.get() if unsafe_load_pickle is None else unsafe_load_pickle
    token = _unsafe.set(unsafe)
    saved = {name: os.environ.pop(name, None) for name in _FORCE.values()}
    os.environ[_FORCE[unsafe]] = "1"
    present = torch.serialization.get_safe_globals()
    try:
        with torch.serialization.safe_globals(
                [] if unsafe else [g for g in SAFE_GLOBALS if g not in present]):
            yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value
        _unsafe.reset(token)


def load_checkpoint(filename, map_location=None):
    """mmengine's ``CheckpointLoader.load_checkpoint`` (any scheme) in :func:`checkpoint_loading`
    (weights-only unless an enclosing scope opted in to full unpickling)."""
    with checkpoint_loading():
        return CheckpointLoader.load_checkpoint(filename, map_location=map_location)
