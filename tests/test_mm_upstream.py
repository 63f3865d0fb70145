"""The OpenMMLab stack works on its own in our environment: mmseg's and mmpose's inference APIs
and their tools/train.py and tools/test.py, each in a fresh interpreter that never imports arsam
(the mmcv-lite stand-in is part of the venv: `make setup`, arsam/mmlab/mmcv_ext.py)."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG = osp.join(ROOT, "configs", "seg", "fcn", "fcn_r18-d8_1xb8-1k_shapes-64x64_sgd.py")
POSE = osp.join(ROOT, "configs", "pose", "topdown_heatmap",
                "td-hm_res18_1xb32-30e_sticks-96x64_adam.py")
NO_ARSAM = "assert not [m for m in sys.modules if m.split('.')[0] in ('arsam', 'seg', 'pose')]"


def run(*args, cwd):
    """Run python with ``args`` in a fresh interpreter; its environment without our checkout
    on PYTHONPATH (an installed arsam is importable through the editable install but unused)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, *args], cwd=cwd, env=dict(env, OMP_NUM_THREADS="1"),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (
        f"{args} failed; is the mmcv-lite stand-in in the venv (make setup)?\n{out.stderr[-3000:]}")
    return out.stdout


def upstream_config(path, tmp_path, dataset_type, **dataset):
    """Our offline config with mmseg's / mmpose's own dataset class and base optimizer wrapper,
    no custom_imports, a narrow network: a config a user of the library alone would write."""
    cfg = Config.fromfile(path)
    cfg.pop("custom_imports")
    cfg.work_dir = str(tmp_path / "work")
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader"):
        d = cfg[loader].dataset
        d.pop("generate")
        d.update(type=dataset_type, data_root=str(tmp_path / "data"), **dataset)
        cfg[loader].update(num_workers=0, persistent_workers=False, batch_size=2)
    cfg.model.backbone.update(stem_channels=8, base_channels=8)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=10 ** 6)
    cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]
    out = str(tmp_path / "config.py")
    cfg.dump(out)
    return out


def save_state_dict(config, tmp_path):
    """A checkpoint as the model zoos ship them (state_dict and plain meta), of the config's
    model, written by this process (weights-only loadable, so tools/test.py reads it)."""
    from mmengine.registry import MODELS, DefaultScope
    cfg = Config.fromfile(config)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    path = str(tmp_path / "model.pth")
    torch.save(dict(state_dict=model.state_dict(), meta=dict(note="test")), path)
    return path


@pytest.fixture(scope="module")
def seg_config(tmp_path_factory):
    from seg import synthetic
    tmp_path = tmp_path_factory.mktemp("seg")
    synthetic.generate(str(tmp_path / "data"), num_train=4, num_val=2, size=64)
    config = upstream_config(SEG, tmp_path, "BaseSegDataset", img_suffix=".png",
                             seg_map_suffix=".png", metainfo=dict(classes=synthetic.CLASSES,
                                                                  palette=synthetic.PALETTE))
    cfg = Config.fromfile(config)
    cfg.model.decode_head.update(in_channels=64, channels=16)
    cfg.model.auxiliary_head.update(in_channels=32, channels=8)
    cfg.dump(config)
    return config, tmp_path


@pytest.fixture(scope="module")
def pose_config(tmp_path_factory):
    from pose import synthetic
    tmp_path = tmp_path_factory.mktemp("pose")
    synthetic.generate(str(tmp_path / "data"), num_train=4, num_val=2, size=128)
    config = upstream_config(POSE, tmp_path, "CocoDataset")
    cfg = Config.fromfile(config)
    cfg.model.head.update(in_channels=64, deconv_out_channels=(16, 16, 16))
    ann_file = str(tmp_path / "data" / "annotations" / "person_keypoints_val.json")
    cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = ann_file
    cfg.dump(config)
    return config, tmp_path


def test_mmseg_apis_infer_without_arsam(seg_config, tmp_path):
    config, data = seg_config
    image = sorted((data / "data" / "img_dir" / "val").iterdir())[0]
    out = run("-c", f"""
import sys
from mmseg.apis import inference_model, init_model
model = init_model({config!r}, device='cpu')
result = inference_model(model, {str(image)!r})
{NO_ARSAM}
print(tuple(result.pred_sem_seg.data.shape), int(result.pred_sem_seg.data.max()) < 4)
""", cwd=tmp_path)
    assert out.split("\n")[-2] == "(1, 64, 64) True"


def test_mmpose_apis_infer_without_arsam(pose_config, tmp_path):
    config, data = pose_config
    image = sorted((data / "data" / "val").iterdir())[0]
    out = run("-c", f"""
import sys
import numpy as np
from mmpose.apis import inference_topdown, init_model
model = init_model({config!r}, device='cpu')
[result] = inference_topdown(model, {str(image)!r}, bboxes=np.array([[10, 10, 74, 106]]))
{NO_ARSAM}
print(result.pred_instances.keypoints.shape)
""", cwd=tmp_path)
    assert out.split("\n")[-2] == "(1, 17, 2)"


@pytest.mark.parametrize("library", ["mmseg", "mmpose"])
def test_tools_train_and_test_without_arsam(seg_config, pose_config, tmp_path, library):
    """The library's own tools/train.py trains a short run and tools/test.py
    evaluates a checkpoint, in fresh interpreters; the tools never import arsam here (the
    configs name no arsam component)."""
    config, _ = seg_config if library == "mmseg" else pose_config
    tools = osp.join(osp.dirname(__import__(library).__file__), ".mim", "tools")
    length = (["train_cfg.max_iters=2", "train_cfg.val_interval=2"] if library == "mmseg" else
              ["train_cfg.max_epochs=1"])
    work = str(tmp_path / "work")
    run(osp.join(tools, "train.py"), config, "--work-dir", work, "--cfg-options", *length,
        cwd=tmp_path)
    log = open(next(p for p in sorted((tmp_path / "work").rglob("*.log")))).read()
    # mmseg: 2 iterations; mmpose: one epoch of the 8 figures in 4 images, 2 a batch
    assert re.search(r"Iter\(train\) +\[2/2\]" if library == "mmseg" else
                     r"Epoch\(train\) +\[1\]\[4/4\]", log)
    assert "mIoU" in log if library == "mmseg" else "coco/AP" in log
    out = run(osp.join(tools, "test.py"), config, save_state_dict(config, tmp_path),
              "--work-dir", work, cwd=tmp_path)
    assert ("mIoU" in out) if library == "mmseg" else ("coco/AP" in out)
