"""Every configs/seg config builds; mmseg's FCN trains on the offline shapes data through each
optimizer (Runner, CPU, tiny widths) and evaluates with IoUMetric; errors come before training."""
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

import seg  # noqa: F401  (first: mmcv._ext stand-in, registrations)
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import DATASETS, MODELS

ROOT = os.path.join(os.path.dirname(__file__), "..", "configs", "seg")
OPTIMS = ("sgd", "sam", "esam", "ksam", "vsam", "arsam")
TASKS = {"fcn": ("fcn_r18-d8", 19, 512), "deeplabv3plus": ("deeplabv3plus_r50-d8", 19, 2048)}
DATASETS_ = {"4xb2-80k_cityscapes-512x1024": 19, "4xb4-80k_ade20k-512x512": 150,
             "4xb4-40k_voc12aug-512x512": 21, "1xb8-1k_shapes-64x64": 4}
WRAPPERS = {"sgd": "OptimWrapper", "sam": "SAMOptimWrapper", "esam": "ESAMOptimWrapper",
            "ksam": "KSAMOptimWrapper", "vsam": "VSAMOptimWrapper", "arsam": "ARSAMOptimWrapper"}
OFFLINE = os.path.join(ROOT, "fcn", "fcn_r18-d8_1xb8-1k_shapes-64x64_{}.py")
BATCH = 4


def config_path(model, data, optim):
    return os.path.join(ROOT, model, f"{TASKS[model][0]}_{data}_{optim}.py")


def test_the_config_matrix_is_complete():
    expected = {config_path(m, d, o) for m in TASKS for d in DATASETS_ for o in OPTIMS}
    found = set(glob.glob(os.path.join(ROOT, "*", "*.py"))) - set(
        glob.glob(os.path.join(ROOT, "_base_", "*.py")))
    assert {os.path.normpath(p) for p in found} == {os.path.normpath(p) for p in expected}


@pytest.mark.parametrize("model", sorted(TASKS))
@pytest.mark.parametrize("data", sorted(DATASETS_))
def test_configs_build(model, data):
    """All optimizer variants of a task differ only in optim_wrapper; the model is mmseg's own."""
    cfgs = {o: Config.fromfile(config_path(model, data, o)) for o in OPTIMS}
    base = cfgs["sgd"].to_dict()
    for optim, cfg in cfgs.items():
        assert cfg.optim_wrapper.type == WRAPPERS[optim]
        assert OPTIM_WRAPPERS.get(cfg.optim_wrapper.type) is not None
        assert cfg.optim_wrapper.optimizer == dict(type="SGD", lr=0.01, momentum=0.9,
                                                   weight_decay=0.0005)
        assert cfg.custom_imports == dict(imports=["arsam", "seg"], allow_failed_imports=False)
        assert {k: v for k, v in cfg.to_dict().items() if k != "optim_wrapper"} == {
            k: v for k, v in base.items() if k != "optim_wrapper"}
    cfg = cfgs["arsam"]
    assert cfg.default_scope == "mmseg"
    assert DATASETS.get(cfg.train_dataloader.dataset.type) is not None
    assert cfg.model.decode_head.num_classes == DATASETS_[data]
    assert cfg.model.decode_head.in_channels == TASKS[model][2]
    if model == "fcn":  # build the small ones (no weights are loaded by building)
        with DefaultScope.overwrite_default_scope("mmseg"):
            net = MODELS.build(cfg.model)
        assert type(net) is EncoderDecoder and net.backbone.depth == 18


def tiny(optim, root, work_dir, iters=2, validate=False, config=None, **wrapper):
    """The offline FCN config (of ``optim``, or the file ``config``) at 8 base channels, batch 4,
    0 workers, data under ``root``."""
    cfg = Config.fromfile(config or OFFLINE.format(optim))
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = uuid.uuid4().hex  # Runners of one name share logger and visualizer
    cfg.log_level = "WARNING"
    m = cfg.model
    m.backbone.update(stem_channels=8, base_channels=8, norm_cfg=dict(type="BN"))
    m.decode_head.update(in_channels=64, channels=16, norm_cfg=dict(type="BN"))
    m.auxiliary_head.update(in_channels=32, channels=8, norm_cfg=dict(type="BN"))
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.update(num_workers=0, persistent_workers=False, batch_size=BATCH)
        loader.dataset.update(data_root=root, generate=dict(num_train=8, num_val=4, size=64))
    cfg.train_cfg.update(max_iters=iters, val_interval=iters)
    cfg.default_hooks.checkpoint = None
    cfg.optim_wrapper.update(wrapper)
    if not validate:
        cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    return cfg


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """The data root; the first run's dataset generates the data there (generate=...)."""
    return str(tmp_path_factory.mktemp("seg") / "shapes")


def train(cfg):
    runner = Runner.from_cfg(cfg)
    capture = Capture()
    runner.register_hook(capture)
    runner.train()
    return runner, capture


# samples of one step at batch 4 through the per-sample losses: ESAM (gamma 0.5) backward on the
# batch, a no-grad forward at w+e, backward on the 2 selected samples; K-SAM a no-grad forward, then
# k1 = 1 and k2 = 2 samples
SAMPLES = {"esam": dict(forward_samples=2 * BATCH + 2, backward_samples=BATCH + 2),
           "ksam": dict(forward_samples=BATCH + 1 + 2, backward_samples=1 + 2)}


@pytest.mark.parametrize("optim", OPTIMS)
def test_each_optimizer_trains_mmseg_fcn_on_the_offline_data(optim, shapes, tmp_path):
    reuse = dict(vsam=dict(start_iter=1, window=2, slices=2), arsam=dict(start_iter=1)).get(optim, {})
    runner, capture = train(tiny(optim, shapes, tmp_path, iters=3, **reuse))
    wrapper = runner.optim_wrapper
    assert type(wrapper) is OPTIM_WRAPPERS.get(WRAPPERS[optim]) and type(runner.model) is EncoderDecoder
    assert not unchanged(capture, runner) and len(capture.losses) == 3
    assert all(torch.isfinite(torch.tensor(capture.losses)))
    if optim == "sgd":
        return
    core = wrapper.optimizer
    assert core.iteration == 3
    if optim in SAMPLES:
        assert {k: core.stats[k] for k in SAMPLES[optim]} == SAMPLES[optim]
    if optim in ("vsam", "arsam"):  # past start_iter: the schedule's rate, PSF stored
        assert 0.0 < core.stats["sampling_rate"] < 1.0 and core.psf_norm > 0.0


def test_train_then_evaluate_miou(shapes, tmp_path):
    runner, capture = train(tiny("arsam", shapes, tmp_path, iters=2, validate=True, start_iter=1))
    assert set(capture.metrics) == {"aAcc", "mIoU", "mAcc"}
    assert 0.0 <= capture.metrics["mIoU"] <= capture.metrics["mAcc"] <= 100.0
    assert runner.val_evaluator.metrics[0].dataset_meta["classes"] == seg.synthetic.CLASSES


def test_missing_dataset_fails_before_training(tmp_path):
    cfg = tiny("sam", str(tmp_path / "nowhere"), tmp_path / "work")
    cfg.train_dataloader.dataset.generate = None
    runner = Runner.from_cfg(cfg)
    with pytest.raises(FileNotFoundError, match=re.escape("(data_prefix.img_path) not found")):
        runner.train()
    assert isinstance(runner.optim_wrapper, dict)  # raised while building the data


@pytest.mark.parametrize("optim", ["esam", "ksam"])
def test_per_sample_optimizers_refuse_a_model_without_per_sample_losses(
        optim, shapes, tmp_path, monkeypatch):
    from arsam.mmlab import per_sample
    monkeypatch.delitem(per_sample.PER_SAMPLE_LOSSES, EncoderDecoder)
    runner, capture = Runner.from_cfg(tiny(optim, shapes, tmp_path)), Capture()
    runner.register_hook(capture)
    with pytest.raises(TypeError, match=re.escape(
            f"{WRAPPERS[optim]} needs per-sample losses but EncoderDecoder provides none")):
        runner.train()
    assert runner.optim_wrapper.optimizer.iteration == 0 and unchanged(capture, runner)
