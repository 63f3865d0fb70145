"""Every configs/pose config builds; mmpose's top-down heatmap model trains on the offline stick
figures through each optimizer (Runner, CPU, tiny widths) and evaluates with CocoMetric (AP)."""
import glob
import os
import re
import uuid

import pytest
import torch
from mmengine import Config
from mmengine.registry import DefaultScope, OPTIM_WRAPPERS
from mmengine.runner import Runner
from runner_capture import Capture, unchanged

import pose  # noqa: F401  (first: mmcv._ext stand-in, registrations)
from mmpose.models.pose_estimators import TopdownPoseEstimator
from mmpose.registry import DATASETS, MODELS

ROOT = os.path.join(os.path.dirname(__file__), "..", "configs", "pose", "topdown_heatmap")
OPTIMS = ("adam", "sam", "esam", "ksam", "vsam", "arsam")
TASKS = {"res50_8xb64-210e_coco-256x192": ("ResNet", 2048),
         "res18_8xb64-210e_coco-256x192": ("ResNet", 512),
         "mobilenetv2_8xb64-210e_coco-256x192": ("MobileNetV2", 1280),
         "res18_1xb32-30e_sticks-96x64": ("ResNet", 512)}
WRAPPERS = {"adam": "OptimWrapper", "sam": "SAMOptimWrapper", "esam": "ESAMOptimWrapper",
            "ksam": "KSAMOptimWrapper", "vsam": "VSAMOptimWrapper", "arsam": "ARSAMOptimWrapper"}
BATCH = 4


def config_path(task, optim):
    return os.path.join(ROOT, f"td-hm_{task}_{optim}.py")


def test_the_config_matrix_is_complete():
    expected = {os.path.normpath(config_path(t, o)) for t in TASKS for o in OPTIMS}
    assert {os.path.normpath(p) for p in glob.glob(os.path.join(ROOT, "*.py"))} == expected


@pytest.mark.parametrize("task", sorted(TASKS))
def test_configs_build(task):
    """All optimizer variants of a task differ only in optim_wrapper; the model is mmpose's own."""
    cfgs = {o: Config.fromfile(config_path(task, o)) for o in OPTIMS}
    base = cfgs["adam"].to_dict()
    for optim, cfg in cfgs.items():
        assert cfg.optim_wrapper.type == WRAPPERS[optim]
        assert OPTIM_WRAPPERS.get(cfg.optim_wrapper.type) is not None
        assert cfg.optim_wrapper.optimizer == dict(type="Adam", lr=5e-4)
        assert cfg.custom_imports == dict(imports=["arsam", "pose"], allow_failed_imports=False)
        assert {k: v for k, v in cfg.to_dict().items() if k != "optim_wrapper"} == {
            k: v for k, v in base.items() if k != "optim_wrapper"}
    cfg = cfgs["arsam"]
    backbone, channels = TASKS[task]
    assert cfg.default_scope == "mmpose" and cfg.model.type == "TopdownPoseEstimator"
    assert DATASETS.get(cfg.train_dataloader.dataset.type) is not None
    assert cfg.val_evaluator.type == "CocoMetric"
    assert cfg.model.backbone.type == backbone and cfg.model.head.in_channels == channels
    assert cfg.model.head.decoder == cfg.codec and cfg.model.head.out_channels == 17
    if "res50" not in task:  # build the small ones (no weights are loaded by building)
        with DefaultScope.overwrite_default_scope("mmpose"):
            net = MODELS.build(cfg.model)
        assert type(net) is TopdownPoseEstimator


def tiny(optim, root, work_dir, validate=False, config=None, **wrapper):
    """The offline config (of ``optim``, or the file ``config``) at 8 base channels, 16-channel
    deconvs, batch 4, 0 workers, 3 steps."""
    cfg = Config.fromfile(config or config_path("res18_1xb32-30e_sticks-96x64", optim))
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = uuid.uuid4().hex  # Runners of one name share logger and visualizer
    cfg.log_level = "WARNING"
    cfg.model.backbone.update(stem_channels=8, base_channels=8)
    cfg.model.head.update(in_channels=64, deconv_out_channels=(16, 16, 16))
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.update(num_workers=0, persistent_workers=False, batch_size=BATCH)
        loader.dataset.update(data_root=root,
                              generate=dict(num_train=12, num_val=4, size=64, max_figures=1))
    cfg.val_evaluator.ann_file = os.path.join(root, "annotations/person_keypoints_val.json")
    cfg.train_cfg.update(max_epochs=1, val_interval=1)
    cfg.default_hooks.checkpoint = None
    cfg.optim_wrapper.update(wrapper)
    if not validate:
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    return cfg


@pytest.fixture(scope="module")
def sticks(tmp_path_factory):
    """The data root; the first run's dataset generates the data there (generate=...)."""
    return str(tmp_path_factory.mktemp("pose") / "sticks")


def run(cfg):
    runner, capture = Runner.from_cfg(cfg), Capture()
    runner.register_hook(capture)
    return runner, capture


# samples of one step at batch 4 through the per-sample losses (as in test_seg_train.py)
SAMPLES = {"esam": dict(forward_samples=2 * BATCH + 2, backward_samples=BATCH + 2),
           "ksam": dict(forward_samples=BATCH + 1 + 2, backward_samples=1 + 2)}


@pytest.mark.parametrize("optim", OPTIMS)
def test_each_optimizer_trains_mmpose_topdown_on_the_offline_data(optim, sticks, tmp_path):
    reuse = dict(vsam=dict(start_iter=1, window=2, slices=2), arsam=dict(start_iter=1)).get(optim, {})
    runner, capture = run(tiny(optim, sticks, tmp_path, **reuse))
    runner.train()
    assert type(runner.optim_wrapper) is OPTIM_WRAPPERS.get(WRAPPERS[optim])
    assert type(runner.model) is TopdownPoseEstimator
    assert not unchanged(capture, runner) and len(capture.losses) == 3
    assert all(torch.isfinite(torch.tensor(capture.losses)))
    if optim == "adam":
        return
    core = runner.optim_wrapper.optimizer
    assert core.iteration == 3 and type(core.base_optimizer) is torch.optim.Adam
    if optim in SAMPLES:
        assert {k: core.stats[k] for k in SAMPLES[optim]} == SAMPLES[optim]
    if optim in ("vsam", "arsam"):  # past start_iter: the schedule's rate, PSF stored
        assert 0.0 < core.stats["sampling_rate"] < 1.0 and core.psf_norm > 0.0


def test_train_then_evaluate_ap(sticks, tmp_path):
    runner, capture = run(tiny("arsam", sticks, tmp_path, validate=True, start_iter=1))
    runner.train()
    assert {"coco/AP", "coco/AP .5", "coco/AR"} <= set(capture.metrics)
    assert 0.0 <= capture.metrics["coco/AP"] <= 1.0


def test_missing_dataset_fails_before_training(tmp_path):
    cfg = tiny("sam", str(tmp_path / "nowhere"), tmp_path / "work")
    cfg.train_dataloader.dataset.generate = None
    runner, _ = run(cfg)
    with pytest.raises(FileNotFoundError, match=re.escape(
            "annotations/person_keypoints_train.json' not found")):
        runner.train()
    assert isinstance(runner.optim_wrapper, dict)  # raised while building the data


@pytest.mark.parametrize("optim", ["esam", "ksam"])
def test_per_sample_optimizers_refuse_a_model_without_per_sample_losses(
        optim, sticks, tmp_path, monkeypatch):
    from arsam.mmlab import per_sample
    monkeypatch.delitem(per_sample.PER_SAMPLE_LOSSES, TopdownPoseEstimator)
    runner, capture = run(tiny(optim, sticks, tmp_path))
    with pytest.raises(TypeError, match=re.escape(
            f"{WRAPPERS[optim]} needs per-sample losses but TopdownPoseEstimator provides none")):
        runner.train()
    assert runner.optim_wrapper.optimizer.iteration == 0 and unchanged(capture, runner)
