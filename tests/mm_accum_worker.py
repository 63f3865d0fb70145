"""Worker of tests/test_mm_accumulate.py, started by torchrun (2 processes, gloo): each case of
CASES trained through mmengine's Runner with MMDistributedDataParallel and
``accumulative_counts=COUNTS``; saves per rank the parameters, the stats of each iteration and
the gradient synchronizations counted after each iteration (DDP's own all-reduces, through a
comm hook, and the wrapper's all-reduces of the update gradient)."""
import os
import sys

import torch
import torch.distributed as dist
from mm_tiny import PerSampleClassifier, TinyClassifier, TinyData, make_model, make_runner, \
    optim_cfg
from mmengine.hooks import Hook
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from arsam.mmlab import wrappers

ITERS, COUNTS = 6, 2
CASES = {
    "SAM": (TinyClassifier, {}),
    "ESAM": (PerSampleClassifier, dict(beta=0.5, gamma=0.5)),
    "KSAM": (PerSampleClassifier, dict(k1=0.25, k2=0.5)),
    "ARSAM": (TinyClassifier, dict(schedule="fixed", rate=0.5, start_iter=1)),
}


class CountSyncs(Hook):
    """DDP's bucket all-reduces (a comm hook) and the wrapper's (``all_reduce_params``), counted
    after each iteration, with the core's stats."""

    def __init__(self):
        self.ddp = self.wrapper = 0
        self.record = []

    def before_train(self, runner):
        def hook(state, bucket):
            self.ddp += 1
            return default_hooks.allreduce_hook(None, bucket)
        runner.model.register_comm_hook(None, hook)
        reduce = wrappers.all_reduce_params

        def counted(*args, **kwargs):
            self.wrapper += 1
            return reduce(*args, **kwargs)
        wrappers.all_reduce_params = counted

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.record.append(dict(ddp=self.ddp, wrapper=self.wrapper,
                                stats=dict(runner.optim_wrapper.optimizer.stats)))


def main(out_dir):
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    reduce = wrappers.all_reduce_params
    for case, (model_class, kwargs) in CASES.items():
        count = CountSyncs()
        runner = make_runner(
            os.path.join(out_dir, case), make_model(model_class),
            optim_cfg(f"{case}OptimWrapper", rho=0.05, accumulative_counts=COUNTS, **kwargs),
            max_iters=ITERS, data=TinyData(n=32), launcher="pytorch", experiment_name=case,
            custom_hooks=[count],
            cfg=dict(model_wrapper_cfg=dict(type="MMDistributedDataParallel", device_ids=None,
                                            broadcast_buffers=False)))
        runner.train()
        wrappers.all_reduce_params = reduce
        params = {k: v.detach().clone() for k, v in runner.model.module.named_parameters()}
        torch.save(dict(params=params, record=count.record),
                   os.path.join(out_dir, f"{case}-{rank}.pt"))
    dist.barrier()  # every rank done with the group's work before it is torn down
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
