"""arsam-train on digits: config handling, a short Runner run that evaluates, and --resume."""
import json
import os.path as osp
import uuid

import pytest
import torch

from arsam.mmlab.checkpoint import load_checkpoint
from arsam.mmlab.train import build_config, main, parse_args

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SGD = osp.join(ROOT, "configs", "digits", "smallcnn_sgd.py")


def train(config, work_dir, *options, resume=(), flags=()):
    """Run ``arsam-train`` and return the scalars it logged (one dict per logged step).

    Each run gets its own experiment name: mmengine names it by config and second, and two
    Runners of one name in a process share their logger and visualizer."""
    assert main([config, "--work-dir", str(work_dir), *resume, *flags, "--cfg-options",
                 "default_hooks.logger.interval=5", f"experiment_name={uuid.uuid4().hex}",
                 *options]) is None
    [scalars] = list(work_dir.glob("*/vis_data/scalars.json"))[-1:]
    return [json.loads(line) for line in open(scalars)]


def checkpoint(path):
    return load_checkpoint(str(path), map_location="cpu")  # weights-only


def test_build_config_options():
    cfg = build_config(parse_args([SGD, "--cfg-options", "train_cfg.max_epochs=3",
                                   "model.net.width=8"]))
    assert cfg.work_dir == osp.join("./work_dirs", "smallcnn_sgd")
    assert cfg.train_cfg.max_epochs == 3 and cfg.model.net.width == 8
    assert cfg.resume is False and cfg.load_from is None and cfg.launcher == "none"
    cfg = build_config(parse_args([SGD, "--work-dir", "w", "--resume"]))
    assert cfg.work_dir == "w" and cfg.resume is True and cfg.load_from is None
    cfg = build_config(parse_args([SGD, "--resume", "w/epoch_1.pth", "--launcher", "pytorch"]))
    assert cfg.resume is True and cfg.load_from == "w/epoch_1.pth" and cfg.launcher == "pytorch"
    assert cfg.env_cfg.dist_cfg.backend == ("nccl" if torch.cuda.is_available() else "gloo")
    with pytest.raises(SystemExit):
        parse_args([SGD, "--launcher", "slurm"])


@pytest.mark.parametrize("algorithm, wrapper", [
    ("sgd", dict(type="AmpOptimWrapper", loss_scale="dynamic")),  # as the OpenMMLab tools
    ("sam", dict(type="SAMOptimWrapper", loss_scale="dynamic", rho=0.05)),
    ("esam", dict(type="ESAMOptimWrapper", loss_scale=256.0, rho=0.05, beta=0.6, gamma=0.5))])
def test_amp_flag_turns_on_mixed_precision(algorithm, wrapper):
    config = osp.join(ROOT, "configs", "digits", f"smallcnn_{algorithm}.py")
    options = ["--cfg-options", "optim_wrapper.loss_scale=256.0"] if algorithm == "esam" else []
    cfg = build_config(parse_args([config, "--amp", *options]))  # a given loss_scale is kept
    got = cfg.optim_wrapper.to_dict()
    got.pop("optimizer")
    assert {k: v for k, v in got.items() if k in wrapper} == wrapper


def test_amp_flag_refuses_other_wrappers():
    with pytest.raises(ValueError, match=r"--amp supports OptimWrapper, AmpOptimWrapper and the "
                                         r"arsam wrappers .* got optim_wrapper type "
                                         r"'ApexOptimWrapper'"):
        build_config(parse_args([SGD, "--amp", "--cfg-options",
                                 "optim_wrapper.type=ApexOptimWrapper"]))


def test_auto_scale_lr_flag_needs_the_base_batch_size():
    cfg = build_config(parse_args([SGD, "--auto-scale-lr"]))
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=64)
    assert build_config(parse_args([SGD])).auto_scale_lr.get("enable", False) is False
    with pytest.raises(ValueError, match=r"--auto-scale-lr needs auto_scale_lr.base_batch_size "
                                         r"in the config \(the total batch size its lr is for\)"):
        build_config(parse_args([SGD, "--auto-scale-lr", "--cfg-options",
                                 "auto_scale_lr={}"]))


def test_build_config_load_from_and_the_loading_opt_in():
    cfg = build_config(parse_args([SGD, "--load-from", "w/epoch_1.pth"]))
    assert cfg.resume is False and cfg.load_from == "w/epoch_1.pth"
    assert "unsafe_load_pickle" not in cfg
    cfg = build_config(parse_args([SGD, "--resume", "--unsafe-load-pickle"]))
    assert cfg.resume is True and cfg.unsafe_load_pickle is True
    with pytest.raises(SystemExit):  # resume or load weights: one of them
        parse_args([SGD, "--resume", "--load-from", "w/epoch_1.pth"])


def test_short_run_evaluates_and_resumes_exactly(tmp_path):
    epochs = ["train_cfg.val_interval=1", "default_hooks.checkpoint.interval=1"]
    scalars = train(SGD, tmp_path / "whole", "train_cfg.max_epochs=2", *epochs)
    [val1, val2] = [s for s in scalars if "accuracy/top1" in s]
    assert val2["step"] == 2 and 50 < val2["accuracy/top1"] <= val2["accuracy/top5"] <= 100
    # every 5 iterations of each 23-iteration epoch (the epoch's last 3 are not logged)
    assert [s["iter"] for s in scalars if "loss" in s] == [5, 10, 15, 20, 28, 33, 38, 43]
    log = open(next((tmp_path / "whole").glob("*/*.log"))).read()
    assert "eta:" in log and "Epoch(train) [2][20/23]" in log

    # stopped after one epoch, then resumed from the work dir's latest checkpoint
    train(SGD, tmp_path / "split", "train_cfg.max_epochs=1", *epochs)
    train(SGD, tmp_path / "split", "train_cfg.max_epochs=2", *epochs, resume=["--resume"])
    whole, resumed = (checkpoint(tmp_path / d / "epoch_2.pth") for d in ("whole", "split"))
    assert whole["meta"]["iter"] == resumed["meta"]["iter"] == 46
    for name, tensor in whole["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], tensor, rtol=0, atol=0,
                                   msg=name)
