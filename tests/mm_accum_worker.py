"""Worker of tests/test_mm_accumulate.py, started by torchrun (2 processes, gloo): each case of
CASES trained through mmengine's Runner with MMDistributedDataParallel and
``accumulative_counts=COUNTS`` (ITERS odd: the run's last iteration is a group of its own);
saves per rank the parameters, the stats of each iteration, ``should_sync()`` before it and the
gradient synchronizations counted after it (DDP's own all-reduces, through a comm hook, and the
wrapper's all-reduces of the update gradient)."""
import sys

from mm_ddp_worker import run_cases, train_ddp
from mm_tiny import PerSampleClassifier, TinyClassifier, make_model, optim_cfg
from mmengine.hooks import Hook
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from arsam.mmlab import wrappers

ITERS, COUNTS = 7, 2
CASES = {
    "SAM": (TinyClassifier, {}),
    "ESAM": (PerSampleClassifier, dict(beta=0.5, gamma=0.5)),
    "KSAM": (PerSampleClassifier, dict(k1=0.25, k2=0.5)),
    "ARSAM": (TinyClassifier, dict(schedule="fixed", rate=0.5, start_iter=1)),
    "SAM-sync_ascent": (TinyClassifier, dict(sync_ascent=True)),
}


class CountSyncs(Hook):
    """DDP's bucket all-reduces (a comm hook) and the wrapper's (``all_reduce_params``), counted
    after each iteration, with the core's stats and the wrapper's ``should_sync()`` before it."""

    def __init__(self):
        self.ddp = self.wrapper = 0
        self.should_sync = None
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

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.should_sync = runner.optim_wrapper.should_sync()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.record.append(dict(ddp=self.ddp, wrapper=self.wrapper, should_sync=self.should_sync,
                                stats=dict(runner.optim_wrapper.optimizer.stats)))


def train_case(out_dir, case):
    model_class, kwargs = CASES[case]
    count, reduce = CountSyncs(), wrappers.all_reduce_params
    try:
        optim = optim_cfg(f"{case.split('-')[0]}OptimWrapper", rho=0.05,
                          accumulative_counts=COUNTS, **kwargs)
        params = train_ddp(out_dir, case, make_model(model_class), optim, count, ITERS)
    finally:
        wrappers.all_reduce_params = reduce
    return dict(params=params, record=count.record)


if __name__ == "__main__":
    run_cases(sys.argv[1], CASES, train_case)
