"""``ArsamRunner``: mmengine's Runner with safe checkpoint loading and checks before training.

``arsam-train`` builds it (a config selects it elsewhere with ``runner_type='ArsamRunner'``):

* every checkpoint load it makes runs in :func:`arsam.mmlab.checkpoint.checkpoint_loading`:
  weights-only with mmengine's checkpoint types allowed, whatever the scheme. That covers models
  that load weights when built (``QuantizedClassifier``'s ``fp_checkpoint``), pretrained
  weights loaded by ``init_weights`` (``init_cfg=dict(type='Pretrained', ...)``, mmseg's
  ``pretrained``), ``load_from`` and ``resume``;
* a loaded checkpoint's ``meta['config']`` is dropped: mmengine's ``resume`` executes it as a
  Python config file (to compare GPU counts), so a checkpoint of tensors and strings alone could
  run code;
* before the first iteration :class:`CheckBatchSizeHook` checks the optim wrapper's subset
  sizes against the smallest batch of the training data and tells the cores the length of an
  epoch (ARSAM's warm-up is in epochs).

``unsafe_load_pickle=True`` (argument, or config key of that name) unpickles checkpoints fully
and keeps ``meta['config']``, as mmengine under torch < 2.6 did: a file can then run any code.
"""
import math

import torch
from mmengine.dataset import InfiniteSampler
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapperDict
from mmengine.registry import HOOKS, RUNNERS
from mmengine.runner import Runner

from ..engine import SharpnessAwareOptimizer, check_arg
from .checkpoint import checkpoint_loading


def smallest_batch(dataloader):
    """The size of the smallest batch ``dataloader`` yields on this rank (the last, partial one
    of an epoch), or None when it cannot tell (no ``torch.utils.data.BatchSampler``)."""
    batches = getattr(dataloader, "batch_sampler", None)
    if not isinstance(batches, torch.utils.data.BatchSampler):
        return None
    if batches.drop_last or isinstance(batches.sampler, InfiniteSampler):
        return batches.batch_size
    return len(batches.sampler) % batches.batch_size or batches.batch_size


def steps_per_epoch(dataloader):
    """Steps of one pass over the training data on this rank: ``len(dataloader)``, or, under
    mmengine's InfiniteSampler (iteration-based loops; its length is the whole dataset's), the
    dataset split over the ranks in batches. None when it cannot tell."""
    batches = getattr(dataloader, "batch_sampler", None)
    if isinstance(batches, torch.utils.data.BatchSampler) and isinstance(
            batches.sampler, InfiniteSampler):
        sampler = batches.sampler
        return math.ceil(len(sampler) / (sampler.world_size * batches.batch_size))
    try:
        return len(dataloader)
    except TypeError:  # an iterable without a length
        return None


@HOOKS.register_module()
class CheckBatchSizeHook(Hook):
    """Before training, every sharpness-aware optim wrapper's subset sizes (K-SAM's ``k1``,
    ``k2``) must fit the smallest batch of ``train_dataloader``; a ValueError names the argument.

    Without it a K larger than the last, partial batch fails at the end of the first epoch.
    It also tells each core an epoch's length, :func:`steps_per_epoch` of ``train_dataloader``
    (an epoch is a pass over the training data, in an iteration-based loop too) in optimizer
    steps (``accumulative_counts`` iterations each), where the config did not.
    ``ArsamRunner`` registers it; with another Runner add it to ``custom_hooks``.
    """

    priority = "VERY_HIGH"

    def before_train(self, runner):
        n = smallest_batch(runner.train_dataloader)
        wrappers = runner.optim_wrapper
        wrappers = wrappers.values() if isinstance(wrappers, OptimWrapperDict) else [wrappers]
        for wrapper in wrappers:
            if not isinstance(wrapper.optimizer, SharpnessAwareOptimizer):
                continue
            per_epoch = steps_per_epoch(runner.train_dataloader)
            if wrapper.optimizer.steps_per_epoch is None and per_epoch is not None:
                wrapper.optimizer.steps_per_epoch = wrapper.steps(per_epoch)  # accumulation
            if n is None:
                continue
            try:
                wrapper.optimizer.check_batch_size(n)
            except ValueError as error:
                batches = runner.train_dataloader.batch_sampler
                raise ValueError(
                    f"{type(wrapper).__name__}: {error}; train_dataloader's smallest batch has {n}"
                    f" samples on this rank (the last of an epoch: {len(batches.sampler)} samples"
                    f" in batches of {batches.batch_size}; drop_last=True drops it)") from None


@RUNNERS.register_module()
class ArsamRunner(Runner):
    """mmengine's Runner whose checkpoint loads run no code from the file (see module docstring).

    Args:
        *args, **kwargs: mmengine Runner's.
        unsafe_load_pickle: unpickle checkpoints fully (a file can run any code; only for files
            you trust); the config (``cfg``) key of that name turns it on too.
    """

    def __init__(self, *args, unsafe_load_pickle=False, **kwargs):
        from_cfg = (kwargs.get("cfg") or {}).get("unsafe_load_pickle", False)
        for value in (unsafe_load_pickle, from_cfg):
            check_arg("unsafe_load_pickle", value, isinstance(value, bool), "a bool")
        self.unsafe_load_pickle = unsafe_load_pickle or from_cfg
        with checkpoint_loading(self.unsafe_load_pickle):  # models loading weights when built
            super().__init__(*args, **kwargs)
        if not any(isinstance(hook, CheckBatchSizeHook) for hook in self.hooks):
            self.register_hook(CheckBatchSizeHook())

    def _init_model_weights(self):
        with checkpoint_loading(self.unsafe_load_pickle):  # init_cfg Pretrained, pretrained=
            super()._init_model_weights()

    def load_checkpoint(self, filename, *args, **kwargs):
        """mmengine's (``load_from``, ``resume``) in :func:`checkpoint_loading`; drops
        ``meta['config']``, which ``resume`` would execute, unless ``unsafe_load_pickle``."""
        with checkpoint_loading(self.unsafe_load_pickle):
            checkpoint = super().load_checkpoint(filename, *args, **kwargs)
        meta = checkpoint.get("meta")
        if not self.unsafe_load_pickle and isinstance(meta, dict) and "config" in meta:
            del meta["config"]
            self.logger.warning(f"ignored meta['config'] of {filename}: mmengine's resume would "
                                "execute it as Python code (unsafe_load_pickle=True keeps it)")
        return checkpoint
