"""Worker of tests/test_mm_fsdp.py, started by torchrun (2 processes, gloo on CPU).

Each case trains through the documented config (configs/_base_/strategies/fsdp.py:
ArsamFlexibleRunner, ArsamFSDPStrategy with MMFullyShardedDataParallel, here on the CPU) three
times: STEPS iterations uninterrupted; stopped after STOP iterations, right after a checkpoint;
resumed from that checkpoint to STEPS. Saves per rank and case, for the uninterrupted and the
resumed run, the gathered weights, the logged statistics per step and the optimizer's (local)
state dict, or the error a run raised."""
import datetime
import os
import sys
import traceback

import torch
import torch.distributed as dist
from mm_tiny import (BATCH, PerSampleClassifier, TinyClassifier, TinyData, make_model,
                     optim_cfg)
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import RUNNERS
from torch.distributed.fsdp import FullyShardedDataParallel

import arsam  # noqa: F401  (registers ArsamFlexibleRunner, ArsamFSDPStrategy)

STEPS, STOP = 6, 3
#: FSDPStrategy's state_dict_cfg='full' (rank 0 saves one file of whole tensors) on CPU: with
#: offload_to_cpu (the default) torch's FSDP leaves the per-parameter states of the optimizer
#: state dict as views of one gather buffer when the device is the CPU (all equal to the last)
FULL = dict(state_dict_type="FULL_STATE_DICT",
            state_dict_config=dict(type="FullStateDictConfig", offload_to_cpu=False,
                                   rank0_only=True),
            optim_state_dict_config=dict(type="FullOptimStateDictConfig", offload_to_cpu=False,
                                         rank0_only=True))
#: name: (wrapper, its arguments, FSDPStrategy's state_dict_cfg)
CASES = {
    "ASAM": ("SAMOptimWrapper", dict(adaptive=True, rho=0.5), FULL),
    "ESAM": ("ESAMOptimWrapper", dict(beta=0.5, gamma=1.0), FULL),
    "LookSAM": ("LookSAMOptimWrapper", dict(k=2), FULL),
    "ARSAM": ("ARSAMOptimWrapper", dict(start_iter=2), FULL),
    # loss scaling: FSDP's ShardedGradScaler, its state in the checkpoint (a static scale of 2^-5
    # overflows nothing; the dynamic one grows every 2 steps)
    "ARSAM-amp": ("ARSAMOptimWrapper", dict(start_iter=2, dtype="bfloat16",
                                            loss_scale=dict(init_scale=2.0 ** -5,
                                                            growth_interval=2)), FULL),
    # per-sample losses, a first pass without backward, replays of selected samples
    "KSAM": ("KSAMOptimWrapper", dict(k1=0.25, k2=0.5), FULL),
    # per-rank files of ShardedTensors: loaded only by full unpickling
    "ARSAM-local": ("ARSAMOptimWrapper", dict(start_iter=2), "local"),
}
#: the documented config, on CPU
BASE = Config.fromfile(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "configs", "_base_", "strategies", "fsdp.py"))
STRATEGY = dict(BASE.strategy, model_wrapper=dict(BASE.strategy.model_wrapper,
                                                  device_id=torch.device("cpu")))


class Stop(Exception):
    pass


class Record(Hook):
    """The core's statistics after every iteration; raises Stop after ``stop`` iterations
    (after the checkpoint hook, which runs first)."""

    priority = "LOWEST"

    def __init__(self, stop=None):
        self.stats, self.stop = [], stop

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.stats.append(dict(runner.optim_wrapper.optimizer.stats))
        if runner.iter + 1 == self.stop:
            raise Stop


def run(work_dir, name, resume=False, stop=None):
    wrapper, kwargs, state_dict_cfg = CASES[name]
    record = Record(stop)
    runner = RUNNERS.get(BASE.runner_type)(
        model=make_model(PerSampleClassifier if name == "KSAM" else TinyClassifier, bn=False),
        work_dir=work_dir, experiment_name=name,
        strategy=dict(STRATEGY, state_dict_cfg=state_dict_cfg), launcher="pytorch",
        train_dataloader=dict(dataset=TinyData(n=32), batch_size=BATCH, num_workers=0,
                              sampler=dict(type="InfiniteSampler", shuffle=False),
                              collate_fn=dict(type="default_collate")),
        train_cfg=dict(by_epoch=False, max_iters=STEPS), optim_wrapper=optim_cfg(wrapper, **kwargs),
        param_scheduler=dict(type="MultiStepLR", milestones=[4], gamma=0.1, by_epoch=False),
        default_hooks=dict(logger=dict(type="LoggerHook", interval=1),
                           checkpoint=dict(type="CheckpointHook", interval=STOP, by_epoch=False)),
        custom_hooks=[record], log_processor=dict(by_epoch=False, window_size=1),
        resume=resume, default_scope=None, unsafe_load_pickle=state_dict_cfg == "local")
    try:
        runner.train()
    except Stop:
        return None
    with FullyShardedDataParallel.summon_full_params(runner.model):
        weights = {k: v.detach().clone() for k, v in runner.model.module.named_parameters()}
    return dict(weights=weights, stats=record.stats,
                optimizer=runner.optim_wrapper.state_dict(),
                scaler=type(runner.optim_wrapper.loss_scaler).__name__)


def main(out_dir):
    # the group is made here with gloo (DDPStrategy would init NCCL); FlexibleRunner uses it
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=30))
    rank = dist.get_rank()
    results = {}
    for name in CASES:
        try:
            whole = run(os.path.join(out_dir, name, "whole"), name)
            work_dir = os.path.join(out_dir, name, "resumed")
            run(work_dir, name, stop=STOP)
            results[name] = dict(whole=whole, resumed=run(work_dir, name, resume=True))
        except Exception as error:  # the test reports it
            results[name] = f"{type(error).__name__}: {error}"
            if os.environ.get("ARSAM_DEBUG"):
                traceback.print_exc()
        dist.barrier()
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()  # every rank done with the group's work before it is torn down
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
