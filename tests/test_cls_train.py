"""arsam-train on digits: config handling, a short Runner run that evaluates, and --resume."""
import os
import os.path as osp

import pytest
import torch

from arsam.mmlab.train import build_config, main, parse_args

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SGD = osp.join(ROOT, "configs", "digits", "smallcnn_sgd.py")


def train(work_dir, epochs, *extra):
    return main([SGD, "--work-dir", str(work_dir), "--cfg-options",
                 f"train_cfg.max_epochs={epochs}", "train_cfg.val_interval=1",
                 "default_hooks.checkpoint.interval=1", "default_hooks.logger.interval=5",
                 *extra])


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


def test_short_run_evaluates_and_resumes_exactly(tmp_path):
    whole = train(tmp_path / "whole", 2)
    top1 = whole.message_hub.get_scalar("val/accuracy/top1").current()
    assert 50 < top1 <= 100  # chance is 10%
    assert whole.message_hub.get_scalar("val/accuracy/top5").current() >= top1
    log = open(next((tmp_path / "whole").glob("*/*.log"))).read()
    assert "eta:" in log and "Epoch(train) [2][20/23]" in log
    assert os.path.isfile(tmp_path / "whole" / "epoch_2.pth")

    # stopped after one epoch, then resumed from the work dir's latest checkpoint
    train(tmp_path / "split", 1)
    resumed = train(tmp_path / "split", 2, "--resume")
    assert resumed.train_loop.iter == 46
    for (name, a), b in zip(whole.model.state_dict().items(),
                            resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
