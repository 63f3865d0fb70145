"""Every classification config loads, resolves its registered types and carries the papers'
hyperparameters; the digits configs train a few steps with each optimizer through arsam-train."""
import glob
import inspect
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DATASETS, METRICS, MODELS, OPTIM_WRAPPERS

import arsam
from arsam.nets import NETS
from arsam.schedules import SCHEDULES

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: bases, and the other tasks' configs
OTHERS = ("_base_", "seg", "pose", "quant", "mmpretrain", "fashion_mnist")
CONFIGS = sorted(p for p in glob.glob(osp.join(ROOT, "configs", "**", "*.py"), recursive=True)
                 if osp.relpath(p, osp.join(ROOT, "configs")).split(osp.sep)[0] not in OTHERS)
WRAPPER = {"sgd": "OptimWrapper", "sam": "SAMOptimWrapper", "esam": "ESAMOptimWrapper",
           "ksam": "KSAMOptimWrapper", "periodic_sam": "PeriodicSAMOptimWrapper",
           "vsam": "VSAMOptimWrapper", "arsam": "ARSAMOptimWrapper"}
WRAPPERS_LANDED = all(OPTIM_WRAPPERS.get(name) is not None for name in WRAPPER.values())
#: K-SAM* (K2 halved midway) beside K-SAM, where the paper ran it (CIFAR), and on digits
KSAM_STAR = [("cifar10", "resnet18"), ("cifar10", "wrn28_10"), ("cifar10", "pyramidnet110"),
             ("cifar100", "resnet18"), ("cifar100", "wrn28_10"), ("cifar100", "pyramidnet110"),
             ("digits", "smallcnn")]
ALGORITHMS = dict(WRAPPER, ksam_star="KSAMOptimWrapper")


def expected(dataset, model, algorithm):
    """The papers' settings (vSAM Sec. 5, ESAM Sec. 3.1 and Tables 7-8, K-SAM Sec. 4)."""
    wide = model in ("wrn28_10", "pyramidnet110")
    if dataset == "imagenet":
        sgd, epochs, batch = dict(lr=0.2, weight_decay=1e-4), 90, 64   # 64 x 8 GPUs = 512
    else:
        sgd = dict(lr=0.05, weight_decay=5e-4)
        epochs, batch = {"digits": (30, 64)}.get(dataset, (200, 128))
    extra = {
        "sgd": {},
        "sam": dict(rho=0.05),
        "esam": dict(rho=0.05, beta=0.5 if model == "wrn28_10" else 0.6,
                     gamma=0.7 if dataset == "imagenet" else 0.5),
        "ksam": dict(rho=0.05, k1=1 / 8, k2=1 / 2),
        "periodic_sam": dict(rho=0.05, k=5),
        "vsam": dict(rho=0.05, schedule="vsam", alpha=0.13 if dataset == "cifar100" else 0.1,
                     gamma=0.9 if wide else 0.7),  # the schedule's other defaults: official
        "arsam": dict(rho=0.05),                   # ARSAM's defaults: the 'matched' schedule
    }
    extra["ksam_star"] = dict(extra["ksam"], k2_halve_at=0.5)
    extra = dict(extra[algorithm])
    if wide and "rho" in extra:
        extra["rho"] = 0.1
    return dict(sgd=dict(type="SGD", momentum=0.9, **sgd), epochs=epochs, batch=batch,
                wrapper=dict(type=ALGORITHMS[algorithm], **extra))


def test_all_datasets_and_algorithms_have_configs():
    names = {osp.relpath(p, osp.join(ROOT, "configs")) for p in CONFIGS}
    for dataset, model in [("cifar10", "resnet18"), ("cifar10", "wrn28_10"),
                           ("cifar10", "pyramidnet110"), ("cifar100", "resnet18"),
                           ("cifar100", "wrn28_10"), ("cifar100", "pyramidnet110"),
                           ("imagenet", "resnet50"), ("digits", "smallcnn")]:
        for algorithm in WRAPPER:
            assert osp.join(dataset, f"{model}_{algorithm}.py") in names
    for dataset, model in KSAM_STAR:
        assert osp.join(dataset, f"{model}_ksam_star.py") in names
    assert osp.join("cifar10", "mobilenetv1_sgd.py") in names   # for configs/quant/table5


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: osp.relpath(p, ROOT))
def test_config_loads_and_resolves(path):
    cfg = Config.fromfile(path)
    dataset = osp.basename(osp.dirname(path))
    name = osp.splitext(osp.basename(path))[0]
    algorithm = max((a for a in ALGORITHMS if name.endswith("_" + a)), key=len)
    model = name[:-len(algorithm) - 1]
    want = expected(dataset, model, algorithm)

    assert MODELS.get(cfg.model.type) is not None
    net = dict(cfg.model.net)
    inspect.signature(NETS[net.pop("type")]).bind(**net)  # the net takes these arguments
    assert cfg.model.net.num_classes == {"cifar100": 100, "imagenet": 1000}.get(dataset, 10)
    assert MODELS.get(cfg.data_preprocessor.type) is not None
    assert len(cfg.data_preprocessor.mean) == len(cfg.data_preprocessor.std) == (
        1 if dataset == "digits" else 3)
    for split in ("train", "val", "test"):
        loader = cfg[f"{split}_dataloader"]
        assert DATASETS.get(loader.dataset.type) is not None
        assert loader.collate_fn.type == "default_collate"
        assert loader.sampler.shuffle == (split == "train")
    assert cfg.train_dataloader.batch_size == want["batch"]
    assert METRICS.get(cfg.val_evaluator.type) is not None

    optim = cfg.optim_wrapper.to_dict()
    assert optim.pop("optimizer") == want["sgd"]
    assert optim == want["wrapper"]
    assert cfg.train_cfg.max_epochs == want["epochs"]
    [cosine] = cfg.param_scheduler
    assert cosine.type == "CosineAnnealingLR" and cosine.T_max == cosine.end == want["epochs"]
    assert "arsam" in cfg.custom_imports.imports
    if WRAPPERS_LANDED:
        assert OPTIM_WRAPPERS.get(cfg.optim_wrapper.type) is not None


def test_optimizer_arguments_exist_in_the_core():
    """Each wrapper's keys are arguments of the core optimizer of the same name."""
    for algorithm in ALGORITHMS:
        if algorithm == "sgd":
            continue
        cfg = Config.fromfile(osp.join(ROOT, "configs", "digits", f"smallcnn_{algorithm}.py"))
        keys = set(cfg.optim_wrapper) - {"type", "optimizer"}
        core = arsam.OPTIMIZERS[cfg.optim_wrapper.type[:-len("OptimWrapper")]]
        parameters = set()
        for cls in core.__mro__:
            if "__init__" in vars(cls):
                parameters |= set(inspect.signature(cls.__init__).parameters)
        if core is arsam.ARSAM:  # and the arguments of its schedule
            schedule = SCHEDULES[cfg.optim_wrapper.get("schedule", "matched")]
            parameters |= set(inspect.signature(schedule).parameters)
        assert keys <= parameters, keys - parameters


@pytest.mark.skipif(not WRAPPERS_LANDED, reason="the SAM-family optim wrappers are not merged")
@pytest.mark.parametrize("algorithm", [a for a in ALGORITHMS if a != "sgd"])
def test_digits_sam_family_trains_through_cli(algorithm, tmp_path):
    from test_cls_train import checkpoint, train
    config = osp.join(ROOT, "configs", "digits", f"smallcnn_{algorithm}.py")
    # 128 training images: 2 iterations per epoch, 3 epochs, evaluated at the end; mixed
    # precision (bf16 autocast and loss scaling on CPU), the lr scaled by batch 64 / base 128;
    # ARSAM's warm-up shortened to 1 of the 3 epochs
    warmup = ["optim_wrapper.warmup_epochs=1"] if algorithm in ("vsam", "arsam") else []
    scalars = train(config, tmp_path, "train_dataloader.dataset.test_size=1669",
                    "train_cfg.max_epochs=3", "train_cfg.val_interval=3",
                    "default_hooks.logger.interval=1", "auto_scale_lr.base_batch_size=128",
                    *warmup, flags=["--amp", "--auto-scale-lr"])
    steps = [s for s in scalars if "loss" in s]
    assert [s["iter"] for s in steps] == [1, 2, 3, 4, 5, 6]
    logged = {"sampled", "sampling_rate"} | (
        {"psf_norm"} if algorithm in ("vsam", "arsam") else set())
    assert all(logged <= set(s) for s in steps)  # the optimizer's stats reach the log
    if algorithm == "ksam_star":  # K1 = 8, K2 = 32 of 64; K2 = 16 from the run's midpoint on
        assert [s["backward_samples"] for s in steps] == [40, 40, 40, 24, 24, 24]
    assert 0 <= scalars[-1]["accuracy/top1"] <= 100
    state = checkpoint(tmp_path / "epoch_3.pth")
    assert state["meta"]["iter"] == 6
    optimizer = state["optimizer"]
    assert optimizer["loss_scaler"]["scale"] > 0  # --amp: the loss scaler's state is saved
    assert optimizer["param_groups"][0]["initial_lr"] == 0.025  # 0.05 x 64/128
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values())


def test_cifar_config_model_normalizes_uint8_batches():
    cfg = Config.fromfile(osp.join(ROOT, "configs", "cifar100", "resnet18_sgd.py"))
    model = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    data = model.data_preprocessor(dict(inputs=images, data_samples=torch.tensor([3, 99])), True)
    mean = torch.tensor(cfg.data_preprocessor.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.data_preprocessor.std).view(1, 3, 1, 1)
    torch.testing.assert_close(data["inputs"], (images.float() - mean) / std)
    model.eval()
    assert model(**data, mode="tensor").shape == (2, 100)
