"""mmengine checkpoints under torch >= 2.6, which loads with ``weights_only=True`` by default.

An mmengine checkpoint pickles the training state beside the weights: the message hub's
``HistoryBuffer`` objects (numpy arrays and bound methods, i.e. ``builtins.getattr``), which no
safe-globals allowlist can admit without admitting arbitrary calls. So mmengine's ``load_from``
and ``resume`` fail ("Weights only load failed ... Unsupported global: ...HistoryBuffer").
:func:`install` registers a loader for local paths that unpickles them fully, as every torch
before 2.6 did: load only checkpoints you trust, as with any pickle. Remote schemes are untouched.
"""
import os.path as osp

import torch
from mmengine.runner.checkpoint import CheckpointLoader


def load_trusted_local(filename, map_location=None):
    """mmengine's ``load_from_local`` with ``weights_only=False``."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f"{filename} can not be found.")
    return torch.load(filename, map_location=map_location, weights_only=False)


def install():
    """Make mmengine load local checkpoints with :func:`load_trusted_local`."""
    CheckpointLoader.register_scheme(prefixes="", loader=load_trusted_local, force=True)
