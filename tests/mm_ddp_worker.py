"""Worker of tests/test_mm_ddp.py, started by torchrun: trains each case through mmengine's
Runner with MMDistributedDataParallel (gloo) and saves its parameters and stats per rank."""
import os
import sys

import torch
import torch.distributed as dist
from mm_tiny import (PerSampleClassifier, TinyClassifier, TinyData, make_model, make_runner,
                     optim_cfg)
from mmengine.hooks import Hook

STEPS = 3
CASES = {
    "sam": ("SAMOptimWrapper", {}),
    "sam_sync_ascent": ("SAMOptimWrapper", dict(sync_ascent=True)),
    "arsam": ("ARSAMOptimWrapper", dict(schedule="vsam", start_iter=1, window=2, slices=1)),
    "arsam_matched": ("ARSAMOptimWrapper", dict(start_iter=1, max_rate=1.0, kappa=0.01)),
    "ksam": ("KSAMOptimWrapper", dict(k1=0.25, k2=0.5)),
    "msam": ("MSAMOptimWrapper", {}),
}


class RecordStats(Hook):
    def __init__(self):
        self.stats = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.stats.append(dict(runner.optim_wrapper.optimizer.stats))


def train_ddp(out_dir, case, model, optim_wrapper, hook, max_iters):
    """Train ``model`` through the Runner under MMDistributedDataParallel on TinyData(n=32) with
    ``hook``; returns its parameters."""
    runner = make_runner(
        os.path.join(out_dir, case), model, optim_wrapper, max_iters=max_iters,
        data=TinyData(n=32), launcher="pytorch", experiment_name=case, custom_hooks=[hook],
        cfg=dict(model_wrapper_cfg=dict(type="MMDistributedDataParallel", device_ids=None,
                                        broadcast_buffers=False)))
    runner.train()
    return {k: v.detach().clone() for k, v in runner.model.module.named_parameters()}


def run_cases(out_dir, cases, train_case):
    """On a gloo group (mmengine's init_dist calls torch.cuda.set_device; on CPU the group is
    made here and the Runner, launcher='pytorch', uses it): save ``train_case(out_dir, case)``
    for each of ``cases`` per rank."""
    dist.init_process_group("gloo")
    for case in cases:
        torch.save(train_case(out_dir, case),
                   os.path.join(out_dir, f"{case}-{dist.get_rank()}.pt"))
    dist.barrier()  # every rank done with the group's work before it is torn down
    dist.destroy_process_group()


def train_case(out_dir, case):
    wrapper, kwargs = CASES[case]
    model = make_model(PerSampleClassifier if case == "ksam" else TinyClassifier)
    record = RecordStats()
    params = train_ddp(out_dir, case, model, optim_cfg(wrapper, rho=0.05, **kwargs), record,
                       STEPS)
    return dict(params=params, stats=record.stats)


if __name__ == "__main__":
    run_cases(sys.argv[1], CASES, train_case)
