"""arsam's scope in mmengine's registry tree: components named ``'arsam.<Name>'`` in configs.

The classification components (:mod:`arsam.mmlab.classification`) live in these child registries
rather than in mmengine's root ones, so that their generic names (``ImageClassifier``,
``CIFAR10``, ``Accuracy``: mmpretrain has all three) cannot collide with a library's: a config
says ``type='arsam.ImageClassifier'``. mmengine imports this module when it meets the ``arsam``
scope, and each registry imports its components on first use (``locations``), so such a config
needs no ``custom_imports`` for them. The optim wrappers stay in the root ``OPTIM_WRAPPERS``
(names no library uses, visible from every scope).
"""
from mmengine.registry import DATASETS as ROOT_DATASETS
from mmengine.registry import METRICS as ROOT_METRICS
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import Registry

_LOCATIONS = ["arsam.mmlab.classification"]

MODELS = Registry("model", parent=ROOT_MODELS, scope="arsam", locations=_LOCATIONS)
DATASETS = Registry("dataset", parent=ROOT_DATASETS, scope="arsam", locations=_LOCATIONS)
METRICS = Registry("metric", parent=ROOT_METRICS, scope="arsam", locations=_LOCATIONS)
