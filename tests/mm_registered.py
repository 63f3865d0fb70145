"""mm_tiny's classifier and data registered in mmengine's root registries, for configs run by
the command-line tools in a fresh interpreter (tests/test_mm_tool_flags.py); and a hook that
kills a run after its checkpoint, as an interrupted job."""
from mm_tiny import PerSampleClassifier, TinyData
from mmengine.hooks import Hook
from mmengine.registry import DATASETS, HOOKS, MODELS

MODELS.register_module("FlagsTinyClassifier", module=PerSampleClassifier)
DATASETS.register_module("FlagsTinyData", module=TinyData)


class Killed(Exception):
    pass


@HOOKS.register_module()
class KillAfterIter(Hook):
    """Raise Killed at the end of iteration ``iters`` (after CheckpointHook saved)."""

    priority = "LOWEST"

    def __init__(self, iters):
        self.iters = iters

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iters:
            raise Killed(f"killed after iteration {self.iters}")
