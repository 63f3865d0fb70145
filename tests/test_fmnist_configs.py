"""configs/fashion_mnist/: every config loads, builds its model and optim wrapper with the
intended settings; on a slice of Fashion-MNIST (the first images of the real files, copied to a
tmp root) two train an epoch through arsam-train and one through mmpretrain's tools/train.py."""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from arsam import fashion_mnist as fm

mmpretrain = pytest.importorskip("mmpretrain")

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(glob.glob(osp.join(ROOT, "configs", "fashion_mnist", "*.py")))
SGD = dict(type="SGD", lr=0.05, momentum=0.9, weight_decay=5e-4)
WRAPPERS = {
    "sgd": dict(type="OptimWrapper"),
    "sam": dict(type="SAMOptimWrapper", rho=0.05),
    "esam": dict(type="ESAMOptimWrapper", rho=0.05, beta=0.6, gamma=0.5),
    "ksam": dict(type="KSAMOptimWrapper", rho=0.05, k1=0.125, k2=0.5),
    "looksam": dict(type="LookSAMOptimWrapper", rho=0.05, k=5, alpha=0.7),
    "periodic_sam": dict(type="PeriodicSAMOptimWrapper", rho=0.05, k=5),
    "arsam": dict(type="ARSAMOptimWrapper", rho=0.05),  # the default schedule, 'matched'
    "vsam": dict(type="VSAMOptimWrapper", rho=0.05, schedule="vsam", alpha=0.1, gamma=0.7),
    "arsam_fixed": dict(type="ARSAMOptimWrapper", rho=0.05, schedule="fixed", rate=0.2),
}
TRAIN, TEST = 32, 16


def test_every_method_has_a_config():
    assert [osp.basename(p) for p in CONFIGS] == sorted(f"resnet18_{m}.py" for m in WRAPPERS)


@pytest.mark.parametrize("path", CONFIGS, ids=osp.basename)
def test_config_builds_with_its_settings(path):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(path)
    method = osp.basename(path)[len("resnet18_"):-len(".py")]
    optim = cfg.optim_wrapper.to_dict()
    assert optim.pop("optimizer") == SGD and optim == WRAPPERS[method]
    assert cfg.default_scope == "mmpretrain"
    assert cfg.custom_imports.imports == ["arsam", "arsam.mmlab.pretrain"]
    for split, loader in (("train", cfg.train_dataloader), ("test", cfg.val_dataloader)):
        assert loader.dataset.type == "FashionMNIST" and loader.dataset.split == split
        assert loader.dataset.data_prefix == "data/FashionMNIST/raw"  # what `make data` writes
        assert loader.dataset.download is False
    assert cfg.train_cfg.max_epochs == 30 and cfg.param_scheduler[0].T_max == 30
    # the normalization is the training set's, in pixel units
    assert cfg.data_preprocessor.mean == [pytest.approx(fm.MEAN * 255, abs=0.02)]
    assert cfg.data_preprocessor.std == [pytest.approx(fm.STD * 255, abs=0.02)]
    with DefaultScope.overwrite_default_scope("mmpretrain"):
        model = MODELS.build(dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert type(wrapper).__name__ == ("OptimWrapper" if method == "sgd" else
                                      WRAPPERS[method]["type"].replace("VSAM", "ARSAM"))
    model.eval()
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    inputs = model.data_preprocessor(dict(inputs=list(images)), False)["inputs"]
    assert model(inputs, mode="tensor").shape == (2, 10)


def sliced(root, train=TRAIN, test=TEST):
    """The first images of the real files, as IDX files in torchvision's layout under root
    (the header's count rewritten; 16-byte image headers, 8-byte label headers)."""
    out = fm.raw_folder(str(root))
    os.makedirs(out)
    for name in fm.FILES:
        n = train if name.startswith("train") else test
        header, item = (16, 28 * 28) if "images" in name else (8, 1)
        data = open(osp.join(fm.raw_folder(), name), "rb").read()
        with open(osp.join(out, name), "wb") as f:
            f.write(data[:4] + n.to_bytes(4, "big") + data[8:header]
                    + data[header:header + n * item])
    return out


def small(data_prefix, work_dir):
    """--cfg-options: the slice, 8 images a batch, one epoch, ResNet-18 at width 8."""
    options = [f"{loader}.{key}" for loader in ("train_dataloader", "val_dataloader",
                                                "test_dataloader")
               for key in (f"dataset.data_prefix={data_prefix}", "num_workers=0",
                           "persistent_workers=False", "batch_size=8")]
    return ["--work-dir", str(work_dir), "--cfg-options", *options, "train_cfg.max_epochs=1",
            "train_cfg.val_interval=1", "model.backbone.base_channels=8",
            "model.backbone.stem_channels=8", "model.head.in_channels=64",
            "default_hooks.logger.interval=1", "optim_wrapper.warmup_epochs=0"]


@pytest.fixture(scope="module")
def data_prefix(tmp_path_factory):
    if not fm.available():
        pytest.skip(f"Fashion-MNIST is not in {fm.raw_folder()!r}: run `make data`")
    return sliced(tmp_path_factory.mktemp("fmnist"))


def test_the_slice_reads_as_the_first_images(data_prefix):
    from mmpretrain.datasets import FashionMNIST
    dataset = FashionMNIST(data_prefix=data_prefix, split="train", download=False)
    x, y = fm.load(train=True)
    assert len(dataset) == TRAIN
    assert all((dataset[i]["img"] == x[i].numpy()).all() and dataset[i]["gt_label"] == y[i]
               for i in range(TRAIN))


def log_of(work_dir):
    return open(next(iter(sorted(glob.glob(osp.join(work_dir, "*", "*.log")))))).read()


@pytest.mark.parametrize("method", ["esam", "arsam"])
def test_trains_an_epoch_through_arsam_train(method, data_prefix, tmp_path):
    from arsam.mmlab.train import main
    options = small(data_prefix, tmp_path)
    if method != "arsam":
        options.remove("optim_wrapper.warmup_epochs=0")
    main([osp.join(ROOT, "configs", "fashion_mnist", f"resnet18_{method}.py"), *options])
    log = log_of(tmp_path)
    assert "Epoch(train) [1][4/4]" in log and "accuracy/top1" in log  # 32 images, 8 a batch
    assert "sampled:" in log  # the wrapper's statistics reach the log
    state = torch.load(tmp_path / "epoch_1.pth", weights_only=False)
    assert state["meta"]["iter"] == 4
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values()
               if t.is_floating_point())


def test_trains_an_epoch_through_mmpretrains_tools_train(data_prefix, tmp_path):
    tools = osp.join(osp.dirname(mmpretrain.__file__), ".mim", "tools", "train.py")
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    options = small(data_prefix, tmp_path)
    options.remove("optim_wrapper.warmup_epochs=0")
    out = subprocess.run([sys.executable, tools, osp.join(ROOT, "configs", "fashion_mnist",
                                                          "resnet18_ksam.py"), *options],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    log = log_of(tmp_path)
    assert "Epoch(train) [1][4/4]" in log and "accuracy/top1" in log
    # K-SAM: ascent on the top k1 = 1 of 8 losses, descent on the top k2 = 4
    assert "backward_samples: 5.0000" in log
