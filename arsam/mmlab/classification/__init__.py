"""Image classification for mmengine: the model, datasets and accuracy metric.

Importing this package registers ``ImageClassifier`` (root MODELS), ``CIFAR10``, ``CIFAR100``,
``ImageNetFolder``, ``Digits`` (root DATASETS) and ``Accuracy`` (root METRICS).
"""
from .datasets import CIFAR10, CIFAR100, Digits, ImageNetFolder
from .metric import Accuracy
from .model import ImageClassifier

__all__ = ["ImageClassifier", "CIFAR10", "CIFAR100", "ImageNetFolder", "Digits", "Accuracy"]
