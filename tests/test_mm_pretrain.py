"""mmpretrain: the per-sample losses of its ImageClassifier, and its own CIFAR-10 ResNet-18
config (configs/mmpretrain/) trained by ESAM and K-SAM through the Runner as the core would."""
import copy
import os.path as osp
import uuid

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner
from torch.utils.data import Dataset

import arsam
from arsam.mmlab.per_sample import find_per_sample_loss

mmpretrain = pytest.importorskip("mmpretrain")
from mmpretrain.structures import DataSample  # noqa: E402

import arsam.mmlab.pretrain  # noqa: E402,F401  (registers the per-sample losses)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
STEPS, BATCH = 2, 4


def config(variant):
    return Config.fromfile(osp.join(ROOT, "configs", "mmpretrain",
                                    f"resnet18_8xb16_cifar10_{variant}.py"))


class TinyCIFAR(Dataset):
    """Items as mmpretrain's CIFAR10 pipeline packs them (uint8 CHW image, DataSample label)."""

    def __init__(self, n=STEPS * BATCH, soft=False):
        g = torch.Generator().manual_seed(0)
        self.items = []
        for _ in range(n):
            sample = DataSample().set_gt_label(int(torch.randint(10, (), generator=g)))
            if soft:
                sample.set_gt_score(torch.rand(10, generator=g).softmax(0))
            image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=g)
            self.items.append(dict(inputs=image, data_samples=sample))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def build(cfg, **head):
    """The config's model, narrowed (ResNet-18 at width 8: a test on CPU)."""
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(base_channels=8, stem_channels=8)
    model_cfg.head.update(in_channels=64, **head)
    with DefaultScope.overwrite_default_scope("mmpretrain"):
        model = MODELS.build(dict(model_cfg, data_preprocessor=cfg.data_preprocessor))
    model.init_weights()
    return model


@pytest.mark.parametrize("soft, head", [
    (False, {}), (True, {}),
    (False, dict(loss=dict(type="LabelSmoothLoss", label_smooth_val=0.1, loss_weight=2.0)))])
def test_per_sample_losses_are_the_heads_loss_per_image(soft, head):
    model = build(config("esam"), **head)
    data = model.data_preprocessor(pseudo_collate(list(TinyCIFAR(soft=soft))), True)
    losses = find_per_sample_loss(model)(model, data["inputs"], data["data_samples"])
    logits = model.head(model.extract_feat(data["inputs"]))
    if soft:
        expected = -(torch.stack([d.gt_score for d in data["data_samples"]])
                     * logits.log_softmax(1)).sum(1)
    elif head:
        labels = torch.cat([d.gt_label for d in data["data_samples"]])
        expected = 2.0 * F.cross_entropy(logits, labels, reduction="none", label_smoothing=0.1)
    else:
        labels = torch.cat([d.gt_label for d in data["data_samples"]])
        expected = F.cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(losses, expected)
    torch.testing.assert_close(losses.mean(), model.loss(data["inputs"],
                                                         data["data_samples"])["loss"])


def test_other_heads_are_refused():
    model = build(config("esam"))

    class OtherHead(type(model.head)):
        def loss(self, feats, data_samples, **kwargs):
            return {}
    model.head.__class__ = OtherHead
    with pytest.raises(TypeError, match="per-sample losses need a head computing its loss as "
                                        "ClsHead does, got OtherHead in ImageClassifier"):
        find_per_sample_loss(model)(model, torch.zeros(1, 3, 32, 32), [DataSample()])


@pytest.mark.parametrize("variant, core", [("esam", arsam.ESAM), ("ksam", arsam.KSAM)])
def test_mmpretrain_cifar_config_trains_through_the_wrapper_as_the_core(tmp_path, variant, core):
    cfg = config(variant)
    model = build(cfg)
    kwargs = {k: v for k, v in cfg.optim_wrapper.items() if k not in ("type", "optimizer")}
    sgd = {k: v for k, v in cfg.optim_wrapper.optimizer.items() if k not in ("type", "_scope_")}
    data = TinyCIFAR()
    expected = copy.deepcopy(model)
    opt = core(expected.parameters(), torch.optim.SGD, model=expected, **kwargs, **sgd)
    fn = find_per_sample_loss(expected)
    for it in range(STEPS):
        batch = expected.data_preprocessor(
            pseudo_collate([data[i] for i in range(it * BATCH, (it + 1) * BATCH)]), True)

        def closure(indices=None):
            x, samples = batch["inputs"], batch["data_samples"]
            if indices is not None:
                x, samples = x[indices], [samples[i] for i in indices.tolist()]
            return fn(expected, x, samples)
        opt.step(closure)
    runner = Runner(
        model=model, work_dir=str(tmp_path), experiment_name=uuid.uuid4().hex,
        default_scope="mmpretrain",
        train_dataloader=dict(dataset=data, batch_size=BATCH, num_workers=0,
                              sampler=dict(type="InfiniteSampler", shuffle=False),
                              collate_fn=dict(type="pseudo_collate")),
        train_cfg=dict(by_epoch=False, max_iters=STEPS), optim_wrapper=cfg.optim_wrapper,
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=10 ** 6)))
    runner.train()
    assert type(runner.optim_wrapper.optimizer) is core
    assert runner.optim_wrapper.optimizer.iteration == STEPS
    for (key, value), ref in zip(model.state_dict().items(), expected.state_dict().values()):
        torch.testing.assert_close(value, ref, msg=lambda m: f"{key}: {m}")
