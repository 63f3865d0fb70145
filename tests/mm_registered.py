"""mm_tiny's classifier, data and KillAt hook registered in mmengine's root registries, for
configs run by the command-line tools in a fresh interpreter (tests/test_mm_tool_flags.py)."""
from mm_tiny import KillAt, PerSampleClassifier, TinyData
from mmengine.registry import DATASETS, HOOKS, MODELS

MODELS.register_module("FlagsTinyClassifier", module=PerSampleClassifier)
DATASETS.register_module("FlagsTinyData", module=TinyData)
HOOKS.register_module("KillAt", module=KillAt)
