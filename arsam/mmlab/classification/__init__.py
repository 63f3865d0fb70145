"""Image classification for mmengine: the model, datasets and accuracy metric.

Importing this package registers ``ImageClassifier`` (MODELS), ``CIFAR10``, ``CIFAR100``,
``ImageNetFolder``, ``Digits`` (DATASETS) and ``Accuracy`` (METRICS) in arsam's scope of
mmengine's registries (:mod:`arsam.registry`): configs name them ``'arsam.ImageClassifier'``, ...
"""
from .datasets import CIFAR10, CIFAR100, Digits, ImageNetFolder
from .metric import Accuracy
from .model import ImageClassifier

__all__ = ["ImageClassifier", "CIFAR10", "CIFAR100", "ImageNetFolder", "Digits", "Accuracy"]
