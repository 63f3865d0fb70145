"""The examples of docs/examples run, shortened: plain PyTorch with checkpoints and resume, the
davda54/sam migration, mmseg and mmpose configs switched to ARSAM, LSQ W4A4 with export."""
import glob
import os
import runpy

import pytest
import torch
import torch.nn.functional as F
from mmengine import Config
from mmengine.registry import OPTIM_WRAPPERS
from mmengine.runner import Runner

import arsam
import test_pose_train
import test_seg_train

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "docs", "examples")


def example(name):
    """The example's functions (its module namespace; ``main`` not run)."""
    return runpy.run_path(os.path.join(EXAMPLES, name))


def test_every_example_is_tested():
    tested = {"train_arsam.py", "from_davda54_sam.py", "lsq_w4a4_resnet18.py", "mmseg_arsam.py",
              "mmseg_cityscapes_arsam.py", "mmpose_arsam.py", "mmpose_coco_arsam.py"}
    assert {os.path.basename(p) for p in glob.glob(os.path.join(EXAMPLES, "*.py"))} == tested


def test_plain_pytorch_training_resumes_bit_for_bit(tmp_path, capsys):
    main = example("train_arsam.py")["main"]
    args = ["--epochs", "4", "--steps-per-epoch", "5", "--warmup-epochs", "1"]
    whole = main(args + ["--work-dir", str(tmp_path / "whole")])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4 and out[0].startswith("epoch 1/4: loss ")
    assert out[0].endswith("SAM gradients on 5/5 steps")  # the warm-up epoch is SAM
    assert all(int(line.split("on ")[1].split("/")[0]) < 5 for line in out[1:])
    assert sorted(os.listdir(tmp_path / "whole")) == [
        "epoch_1.pth", "epoch_2.pth", "epoch_3.pth", "epoch_4.pth", "last.pth"]

    resumed = main(args + ["--work-dir", str(tmp_path / "resumed"),
                           "--resume", str(tmp_path / "whole" / "epoch_2.pth")])
    out2 = capsys.readouterr().out.splitlines()
    assert out2[0] == f"resumed from {tmp_path / 'whole' / 'epoch_2.pth'} after epoch 2"
    assert out2[1:] == out[2:]
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    # --resume without a path continues from the work dir's last checkpoint: nothing left to do
    main(args + ["--work-dir", str(tmp_path / "whole"), "--resume"])
    assert capsys.readouterr().out == (
        f"resumed from {tmp_path / 'whole' / 'last.pth'} after epoch 4\n")


def two_pass_sam(model, batches, rho=0.3, lr=0.05, momentum=0.9, weight_decay=5e-4):
    """SAM written out as a davda54/sam loop: forward-backward at w, w + e with
    e = rho*g/||g||, forward-backward there (BatchNorm statistics frozen), back to w, SGD step."""
    sgd = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    params = list(model.parameters())
    for x, y in batches:
        sgd.zero_grad()
        F.cross_entropy(model(x), y).backward()
        w = [p.detach().clone() for p in params]
        norm = torch.cat([p.grad.flatten() for p in params]).norm()
        with torch.no_grad():
            for p in params:
                p.add_(p.grad * (rho / (norm + 1e-12)))
        sgd.zero_grad()
        with arsam.frozen_bn_stats(model):
            F.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for p, saved in zip(params, w):
                p.copy_(saved)
        sgd.step()


def test_davda54_style_loop_and_the_migrated_one_take_the_same_steps(capsys):
    from arsam.digits import load_digits_split
    from arsam.nets import SmallCNN
    ns = example("from_davda54_sam.py")
    migrated, sampled = ns["train"](arsam.SAM, steps=3)
    assert sampled == 3
    torch.manual_seed(0)  # the example's sequence: seed, model, then one batch per step
    x_train, y_train, _, _ = load_digits_split(noise=0.6)
    reference = SmallCNN(10, in_channels=1, width=64)
    batches = []
    for _ in range(3):
        idx = torch.randint(len(y_train), (32,))
        batches.append((x_train[idx], y_train[idx]))
    two_pass_sam(reference, batches)
    for (name, a), b in zip(migrated.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)

    sam, ours = ns["main"](["--steps", "20"])
    assert sam == 20 and 2 <= ours < 20  # ARSAM: 2 steps of SAM, then it reuses
    assert capsys.readouterr().out == (
        f"SAM computed a SAM gradient on 20/20 steps, ARSAM on {ours}/20\n")


def test_lsq_w4a4_resnet18_fine_tunes_and_exports_integer_codes(tmp_path, capsys):
    main = example("lsq_w4a4_resnet18.py")["main"]
    exported, error = main(["--work-dir", str(tmp_path), "--fp-epochs", "1", "--epochs", "1",
                            "--max-steps", "2", "--warmup-epochs", "0", "--batch-size", "8",
                            "--test-samples", "16"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"float ResNet-18 ({tmp_path / 'resnet18_fp.pth'}): test accuracy ")
    assert out[1].startswith("W4A4 ResNet-18: test accuracy ")
    assert out[2].startswith(f"exported 21 layers to {tmp_path / 'resnet18_w4a4_codes.pth'}")
    assert error < 1e-5
    saved = torch.load(tmp_path / "resnet18_w4a4_codes.pth", weights_only=True)
    assert list(saved) == list(exported) and len(saved) == 21  # 20 convs and the classifier
    first, last = "conv1", "fc"
    assert list(saved)[0] == first and list(saved)[-1] == last
    for name, entry in saved.items():
        bits = 8 if name in (first, last) else 4
        codes = entry["weight_codes"]
        assert codes.dtype == torch.int8 and entry["weight_bits"] == bits
        assert codes.min() >= -2 ** (bits - 1) and codes.max() <= 2 ** (bits - 1) - 1
        torch.testing.assert_close(entry["weight_codes"], exported[name]["weight_codes"])


def switched_only_the_optim_wrapper(example_cfg, base_cfg):
    strip = lambda cfg: {k: v for k, v in cfg.to_dict().items() if k != "optim_wrapper"}  # noqa
    assert strip(example_cfg) == strip(base_cfg)
    assert example_cfg.optim_wrapper.optimizer == base_cfg.optim_wrapper.optimizer
    assert base_cfg.optim_wrapper.type == "OptimWrapper"
    assert example_cfg.optim_wrapper.type == "ARSAMOptimWrapper"


def test_mmseg_config_switched_to_arsam_trains_and_logs_to_tensorboard(tmp_path):
    path = os.path.join(EXAMPLES, "mmseg_arsam.py")
    switched_only_the_optim_wrapper(Config.fromfile(path),
                                    Config.fromfile(test_seg_train.OFFLINE.format("sgd")))
    cfg = test_seg_train.tiny(None, str(tmp_path / "shapes"), tmp_path / "work", iters=3,
                              config=path, start_iter=1)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert type(runner.optim_wrapper) is OPTIM_WRAPPERS.get("ARSAMOptimWrapper")
    core = runner.optim_wrapper.optimizer
    assert core.iteration == 3 and core.norm_params == ["decode_head"]
    assert type(core.base_optimizer) is torch.optim.SGD
    assert glob.glob(str(tmp_path / "work" / "**" / "events.out.tfevents.*"), recursive=True)


def test_mmpose_config_switched_to_arsam_trains_and_logs_to_tensorboard(tmp_path):
    path = os.path.join(EXAMPLES, "mmpose_arsam.py")
    switched_only_the_optim_wrapper(
        Config.fromfile(path),
        Config.fromfile(test_pose_train.config_path("res18_1xb32-30e_sticks-96x64", "adam")))
    cfg = test_pose_train.tiny(None, str(tmp_path / "sticks"), tmp_path / "work", config=path,
                               start_iter=1)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert type(runner.optim_wrapper) is OPTIM_WRAPPERS.get("ARSAMOptimWrapper")
    core = runner.optim_wrapper.optimizer
    assert core.iteration == 3 and type(core.base_optimizer) is torch.optim.Adam
    assert glob.glob(str(tmp_path / "work" / "**" / "events.out.tfevents.*"), recursive=True)


@pytest.mark.parametrize("name, wrapper", [
    ("mmseg_cityscapes_arsam.py", dict(type="ARSAMOptimWrapper", rho=0.05, start_iter=1200,
                                       norm_params=["decode_head"])),
    ("mmpose_coco_arsam.py", dict(type="ARSAMOptimWrapper", rho=0.05))])
def test_model_zoo_configs_switched_to_arsam(name, wrapper):
    cfg = Config.fromfile(os.path.join(EXAMPLES, name))
    assert cfg.custom_imports == dict(imports=["arsam"], allow_failed_imports=False)
    assert {k: cfg.optim_wrapper[k] for k in wrapper} == wrapper
    assert OPTIM_WRAPPERS.get(cfg.optim_wrapper.type) is not None
    expected = dict(type="SGD", lr=0.01, momentum=0.9, weight_decay=0.0005) if "seg" in name \
        else dict(type="Adam", lr=5e-4)
    assert {k: v for k, v in cfg.optim_wrapper.optimizer.items() if k != "_scope_"} == expected
