"""A Runner hook that records what the seg/pose training tests check."""
import torch
from mmengine.hooks import Hook


class Capture(Hook):
    """Initialized weights, training losses, validation metrics."""

    def __init__(self):
        self.initial, self.metrics, self.losses = None, None, []

    def before_train(self, runner):
        self.initial = [p.detach().clone() for p in runner.model.parameters()]

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses.append(float(outputs["loss"]))

    def after_val_epoch(self, runner, metrics=None):
        self.metrics = metrics


def unchanged(capture, runner):
    """Whether the model's parameters are still those it started training with."""
    return all(torch.equal(a, b) for a, b in zip(capture.initial, runner.model.parameters()))
