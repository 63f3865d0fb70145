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

``ArsamFlexibleRunner`` is the same over mmengine's FlexibleRunner (strategies), and
``ArsamFSDPStrategy`` mmengine's FSDPStrategy with its resume fixed (docs/mmengine.md, "FSDP").
"""
import math
import warnings

import torch
from mmengine._strategy import FSDPStrategy
from mmengine.dataset import InfiniteSampler
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapperDict
from mmengine.registry import HOOKS, RUNNERS, STRATEGIES
from mmengine.runner import FlexibleRunner, Runner

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


def _unsafe_flag(unsafe_load_pickle, kwargs):
    """``unsafe_load_pickle``, the argument or the config (``cfg``) key of that name."""
    from_cfg = (kwargs.get("cfg") or {}).get("unsafe_load_pickle", False)
    for value in (unsafe_load_pickle, from_cfg):
        check_arg("unsafe_load_pickle", value, isinstance(value, bool), "a bool")
    return unsafe_load_pickle or from_cfg


def _drop_config(runner, checkpoint, filename):
    """Drop a loaded checkpoint's ``meta['config']`` (mmengine's resume executes it as Python
    code) unless the runner unpickles fully."""
    meta = checkpoint.get("meta")
    if not runner.unsafe_load_pickle and isinstance(meta, dict) and "config" in meta:
        del meta["config"]
        runner.logger.warning(f"ignored meta['config'] of {filename}: mmengine's resume would "
                              "execute it as Python code (unsafe_load_pickle=True keeps it)")


@RUNNERS.register_module()
class ArsamRunner(Runner):
    """mmengine's Runner whose checkpoint loads run no code from the file (see module docstring).

    Args:
        *args, **kwargs: mmengine Runner's.
        unsafe_load_pickle: unpickle checkpoints fully (a file can run any code; only for files
            you trust); the config (``cfg``) key of that name turns it on too.
    """

    def __init__(self, *args, unsafe_load_pickle=False, **kwargs):
        self.unsafe_load_pickle = _unsafe_flag(unsafe_load_pickle, kwargs)
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
        _drop_config(self, checkpoint, filename)
        return checkpoint


@STRATEGIES.register_module()
class ArsamFSDPStrategy(FSDPStrategy):
    """mmengine's FSDPStrategy with its resume working on torch >= 2.1: mmengine 0.10.7 calls
    ``FSDP.optim_state_dict_to_load(state_dict, model, optim)``, the argument order torch
    changed in 2.1 (pytorch/pytorch#96534) to ``(model, optim, state_dict)``. Any optimizer whose
    state_dict has torch's layout (arsam's cores have it) saves and resumes through FSDP's
    optimizer state dict."""

    def optim_state_dict(self) -> dict:
        """mmengine's, with the optim wrapper's loss scaler state (FSDP's optimizer state dict
        keeps ``state`` and ``param_groups`` only) and without FSDP's warning that it copies
        ``state['arsam']`` as it is (the core's own state: copying it is what it needs)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Found a optim state, arsam, that FSDP "
                                    "cannot process")
            state = super().optim_state_dict()
        scaler = getattr(self.optim_wrapper, "loss_scaler", None)
        if state and scaler is not None:  # rank0_only: the other ranks' are empty
            state["loss_scaler"] = scaler.state_dict()
        return state

    def load_optim_state_dict(self, state_dict: dict) -> None:
        from torch.distributed.fsdp import FullyShardedDataParallel
        state_dict = dict(state_dict)
        scaler = state_dict.pop("loss_scaler", None)
        state = FullyShardedDataParallel.optim_state_dict_to_load(
            self.model, self.optim_wrapper.optimizer, state_dict)
        self.optim_wrapper.load_state_dict(
            state if scaler is None else dict(state, loss_scaler=scaler))


class _DropConfigHook(Hook):
    """FlexibleRunner's loads hand the checkpoint to ``after_load_checkpoint`` before its
    ``resume`` reads ``meta['config']``: dropped there."""

    priority = "VERY_HIGH"

    def after_load_checkpoint(self, runner, checkpoint):
        _drop_config(runner, checkpoint, "the checkpoint")


@RUNNERS.register_module()
class ArsamFlexibleRunner(FlexibleRunner):
    """mmengine's FlexibleRunner (``strategy=``: FSDPStrategy, ...) with ArsamRunner's safe
    checkpoint loading: building the model, training (the strategy's resume and ``load_from``,
    ``init_weights``' pretrained weights) and testing run in :func:`checkpoint_loading`, and
    :class:`CheckBatchSizeHook` is registered (docs/mmengine.md, "FSDP").

    Args:
        *args, **kwargs: mmengine FlexibleRunner's.
        unsafe_load_pickle: as :class:`ArsamRunner`'s.
    """

    def __init__(self, *args, unsafe_load_pickle=False, **kwargs):
        self.unsafe_load_pickle = _unsafe_flag(unsafe_load_pickle, kwargs)
        with checkpoint_loading(self.unsafe_load_pickle):
            super().__init__(*args, **kwargs)
        for hook in (CheckBatchSizeHook, _DropConfigHook):
            if not any(isinstance(h, hook) for h in self.hooks):
                self.register_hook(hook())

    def train(self):
        with checkpoint_loading(self.unsafe_load_pickle):
            return super().train()

    def val(self):
        with checkpoint_loading(self.unsafe_load_pickle):
            return super().val()

    def test(self):
        with checkpoint_loading(self.unsafe_load_pickle):
            return super().test()
