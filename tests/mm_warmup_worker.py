"""Train the one-line ARSAM config (``type='ARSAMOptimWrapper', rho=...`` and nothing else) in
this fresh interpreter; print one JSON line per run.

    python tests/mm_warmup_worker.py WORK_DIR

Runs: an IterBasedTrainLoop under ArsamRunner (an epoch is a pass over the data) and under
mmengine's Runner (no hook: the loop counts as one epoch), and an epoch loop of 12 iterations.
"""
import json
import sys
import warnings

from mm_tiny import TinyData, make_model, make_runner, optim_cfg
from mmengine.hooks import Hook
from mmengine.runner import Runner

from arsam.mmlab.runner import ArsamRunner


class Record(Hook):
    def __init__(self):
        self.sampled = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.sampled.append(runner.optim_wrapper.optimizer.stats["sampled"])


def run(work_dir, runner_class, n, train_cfg):
    record = Record()
    sampler = "InfiniteSampler" if "max_iters" in train_cfg else "DefaultSampler"
    runner = make_runner(work_dir, make_model(), optim_cfg("ARSAMOptimWrapper", rho=0.05),
                         runner_class=runner_class, train_cfg=train_cfg, custom_hooks=[record],
                         train_dataloader=dict(dataset=TinyData(n=n), batch_size=8, num_workers=0,
                                               sampler=dict(type=sampler, shuffle=False),
                                               collate_fn=dict(type="default_collate")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner.train()
    core = runner.optim_wrapper.optimizer
    return dict(steps_per_epoch=core.steps_per_epoch, total_steps=core.total_steps,
                warmup=core.warmup_steps(), sampled=record.sampled,
                warnings=[str(w.message) for w in caught if "ARSAM" in str(w.message)])


if __name__ == "__main__":
    iters = dict(by_epoch=False, max_iters=100)
    for name, runner_class, n, train_cfg in [
            ("iter_arsam_runner", ArsamRunner, 16, iters),
            ("iter_runner", Runner, 16, iters),
            ("epoch_runner", Runner, 32, dict(by_epoch=True, max_epochs=3))]:
        print("RESULT " + json.dumps(dict(run=name, **run(f"{sys.argv[1]}/{name}", runner_class, n,
                                               train_cfg))), flush=True)
