"""QuantizedClassifier and configs/quant: checkpoint loading, architecture check, wrapper steps."""
import math
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DATASETS, MODELS
from mmengine.runner import Runner

import arsam  # noqa: F401  (registers the optim wrappers)
import arsam.mmlab.classification  # noqa: F401
import quant.mmlab  # noqa: F401
from quant import QuantConv2d, QuantLinear

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "quant"
SMALL = dict(type="small_cnn", num_classes=10, in_channels=1, width=16)


FP = {"resnet18": ("cifar10", "cifar_resnet18"), "mobilenetv2": ("cifar10", "mobilenet_v2_cifar"),
      "smallcnn": ("digits", "small_cnn")}
OPTIMIZERS = ["sgd", "sam", "esam", "ksam", "vsam", "arsam"]


@pytest.mark.parametrize("net", list(FP))
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_config_fine_tunes_the_full_precision_config_output(net, optimizer):
    cfg = Config.fromfile(CONFIGS / f"{net}_w4a4_{optimizer}.py")
    dataset, net_type = FP[net]
    fp = Config.fromfile(CONFIGS.parent / dataset / f"{net}_sgd.py")
    assert cfg.model.type == "QuantizedClassifier" and cfg.model.net == fp.model.net
    assert cfg.model.net.type == net_type
    assert cfg.model.fp_checkpoint == f"work_dirs/{net}_sgd/epoch_{fp.train_cfg.max_epochs}.pth"
    assert cfg.model.quantize == dict(w_bits=4, a_bits=4, first_last_bits=8)
    assert cfg.optim_wrapper.paramwise_cfg == dict(custom_keys={"quantizer.step": dict(rho=0.0)})
    assert cfg.optim_wrapper.optimizer == dict(type="SGD", lr=0.01, momentum=0.9,
                                               weight_decay=5e-4)
    wrapper = fp.optim_wrapper.type if optimizer == "sgd" else f"{optimizer.upper()}OptimWrapper"
    assert cfg.optim_wrapper.type == wrapper
    assert cfg.train_dataloader == fp.train_dataloader


TABLE5 = {"resnet18": "cifar_resnet18", "mobilenetv1": "mobilenet_v1_cifar"}
TABLE5_OPTIMIZERS = ["sgd", "sam", "vsam", "arsam"]


@pytest.mark.parametrize("net", list(TABLE5))
@pytest.mark.parametrize("optimizer", TABLE5_OPTIMIZERS)
def test_table5_configs_are_lsq_setting(net, optimizer):
    """vsam.txt Table 5 in LSQ's setting: per-layer steps, W4A4 (first/last 8), 90 epochs of
    cosine from lr 0.01, weight decay 1e-4, from the full-precision config's checkpoint."""
    cfg = Config.fromfile(CONFIGS / "table5" / f"{net}_w4a4_{optimizer}.py")
    fp = Config.fromfile(CONFIGS.parent / "cifar10" / f"{net}_sgd.py")
    assert cfg.model.type == "QuantizedClassifier" and cfg.model.net == fp.model.net
    assert cfg.model.net.type == TABLE5[net]
    assert cfg.model.fp_checkpoint == f"work_dirs/{net}_sgd/epoch_{fp.train_cfg.max_epochs}.pth"
    assert cfg.model.quantize == dict(w_bits=4, a_bits=4, first_last_bits=8, per_channel=False)
    assert cfg.optim_wrapper.optimizer == dict(type="SGD", lr=0.01, momentum=0.9,
                                               weight_decay=1e-4)
    wrapper = fp.optim_wrapper.type if optimizer == "sgd" else f"{optimizer.upper()}OptimWrapper"
    assert cfg.optim_wrapper.type == wrapper
    assert cfg.optim_wrapper.paramwise_cfg == dict(custom_keys={"quantizer.step": dict(rho=0.0)})
    assert cfg.train_cfg.max_epochs == 90
    assert cfg.param_scheduler == [dict(type="CosineAnnealingLR", by_epoch=True, begin=0, end=90,
                                        T_max=90, convert_to_iter_based=True)]
    assert cfg.train_dataloader == fp.train_dataloader


def test_table5_mobilenetv1_has_one_step_per_layer():
    cfg = Config.fromfile(CONFIGS / "table5" / "mobilenetv1_w4a4_sam.py")
    model = MODELS.build(dict(cfg.model, fp_checkpoint=None,
                              net=dict(cfg.model.net, width_mult=0.25)))
    layers = [m for m in model.modules() if isinstance(m, (QuantConv2d, QuantLinear))]
    assert len(layers) == 28                   # 27 convolutions and the classifier
    assert all(m.weight_quantizer.step.shape == () for m in layers)
    assert [m.weight_quantizer.bits for m in (layers[0], layers[1], layers[-1])] == [8, 4, 8]


def save_classifier(path, net=SMALL, seed=0):
    torch.manual_seed(seed)
    model = MODELS.build(dict(type="arsam.ImageClassifier", net=net))
    torch.save(dict(meta={}, state_dict=model.state_dict()), path)
    return model


def test_loads_full_precision_weights_then_converts(tmp_path):
    fp = save_classifier(tmp_path / "fp.pth")
    torch.save(fp.net.state_dict(), tmp_path / "net.pth")       # a plain state_dict works too
    for path in ("fp.pth", "net.pth"):
        model = MODELS.build(dict(type="QuantizedClassifier", net=SMALL,
                                  fp_checkpoint=str(tmp_path / path),
                                  quantize=dict(w_bits=3, first_last_bits=None)))
        net = model.net
        assert type(net.features[0]) is torch.nn.Conv2d and type(net.fc) is torch.nn.Linear
        assert type(net.features[3]) is QuantConv2d
        for name, value in fp.state_dict().items():
            torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)
        weight = fp.net.features[3].weight.detach()           # steps from the loaded weights
        torch.testing.assert_close(net.features[3].weight_quantizer.step.detach(),
                                   2 * weight.abs().mean((1, 2, 3)) / math.sqrt(3))


@pytest.mark.parametrize("other, message", [
    (dict(SMALL, width=8), r"features.0.weight: shape \(8, 1, 3, 3\) in the checkpoint, "
                           r"\(16, 1, 3, 3\) in the model; .* \(11 in all\)"),
    (dict(type="small_cnn", num_classes=10, in_channels=3, width=16),
     r"features.0.weight: shape \(16, 3, 3, 3\) in the checkpoint, \(16, 1, 3, 3\) in the "
     r"model$"),
])
def test_checkpoint_of_another_architecture_rejected_before_training(tmp_path, other, message):
    save_classifier(tmp_path / "other.pth", net=other)
    cfg = Config.fromfile(CONFIGS / "smallcnn_w4a4_arsam.py")
    cfg.model.fp_checkpoint = str(tmp_path / "other.pth")
    cfg.work_dir = str(tmp_path / "work")
    cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]
    cfg.default_scope = None                  # leave no global DefaultScope to other tests
    with pytest.raises(ValueError, match=r"fp_checkpoint '.*other.pth' does not hold a "
                                         r"full-precision SmallCNN of this architecture: "
                                         + message):
        Runner.from_cfg(cfg)                  # the Runner builds the model: nothing trained


def test_quantized_checkpoint_is_not_a_full_precision_one(tmp_path):
    model = MODELS.build(dict(type="QuantizedClassifier", net=SMALL))
    torch.save(dict(state_dict=model.state_dict()), tmp_path / "q.pth")
    with pytest.raises(ValueError, match=r"unexpected features.0.weight_quantizer.step; "):
        MODELS.build(dict(type="QuantizedClassifier", net=SMALL,
                          fp_checkpoint=str(tmp_path / "q.pth")))


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_configs_train_w4a4_through_the_wrappers(tmp_path, optimizer):
    save_classifier(tmp_path / "fp.pth")
    cfg = Config.fromfile(CONFIGS / f"smallcnn_w4a4_{optimizer}.py")
    cfg.model.fp_checkpoint = str(tmp_path / "fp.pth")
    if optimizer in ("vsam", "arsam"):  # no Runner tells the epoch length: warm-up in steps
        cfg.optim_wrapper.start_iter = 1
    model = MODELS.build(cfg.model)
    assert {type(m) for m in model.modules()} >= {QuantConv2d, QuantLinear}
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    steps = {id(m.step) for m in model.modules() if isinstance(m, quant.LSQQuantizer)}
    rho = cfg.optim_wrapper.get("rho")
    groups = wrapper.optimizer.param_groups
    assert {g["rho"] for g in groups if id(g["params"][0]) in steps} == {0.0}
    if rho is not None:
        assert {g["rho"] for g in groups if id(g["params"][0]) not in steps} == {rho}
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    batch = default_collate([dataset[i] for i in range(16)])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(2):
        log = model.train_step(batch, wrapper)
        assert math.isfinite(log["loss"].item())
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert changed == set(before)              # weights and step sizes all trained

    cfg.optim_wrapper.paramwise_cfg = None      # step sizes perturbed too: one group
    wrapper = build_optim_wrapper(MODELS.build(cfg.model), cfg.optim_wrapper)
    assert len(wrapper.optimizer.param_groups) == 1
