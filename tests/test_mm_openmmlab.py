"""Unmodified mmseg EncoderDecoder and mmpose TopdownPoseEstimator train through the Runner with
SAMOptimWrapper and ARSAMOptimWrapper (tiny ResNet-18s on random data)."""
import copy
import uuid

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner import Runner
from mmengine.structures import InstanceData, PixelData
from torch.utils.data import Dataset

import arsam
import mmpose.models  # noqa: F401  (registers into mmpose's registries; after arsam)
import mmseg.models  # noqa: F401

STEPS, BATCH, SIZE = 2, 2, 32
NORM = dict(type="BN", requires_grad=True)
SEG_MODEL = dict(
    type="EncoderDecoder",
    data_preprocessor=dict(type="SegDataPreProcessor", mean=[0.0] * 3, std=[255.0] * 3,
                           size=(SIZE, SIZE), pad_val=0, seg_pad_val=255),
    backbone=dict(type="ResNetV1c", depth=18, stem_channels=8, base_channels=8, num_stages=4,
                  out_indices=(3,), dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1),
                  norm_cfg=NORM, contract_dilation=True),
    decode_head=dict(type="FCNHead", in_channels=64, in_index=0, channels=8, num_convs=1,
                     concat_input=False, num_classes=3, norm_cfg=NORM, align_corners=False,
                     dropout_ratio=0.0,  # deterministic, to compare with the reference
                     loss_decode=dict(type="CrossEntropyLoss", loss_weight=1.0)),
    train_cfg=dict(), test_cfg=dict(mode="whole"))
KEYPOINTS = 4
POSE_MODEL = dict(
    type="TopdownPoseEstimator",
    data_preprocessor=dict(type="PoseDataPreprocessor", mean=[0.0] * 3, std=[255.0] * 3),
    backbone=dict(type="ResNet", depth=18, stem_channels=8, base_channels=8),
    head=dict(type="HeatmapHead", in_channels=64, out_channels=KEYPOINTS,
              deconv_out_channels=(8, 8), deconv_kernel_sizes=(4, 4),
              loss=dict(type="KeypointMSELoss", use_target_weight=True)),
    test_cfg=dict(flip_test=False))


def seg_sample(g):
    from mmseg.structures import SegDataSample
    sample = SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, 3, (1, SIZE, SIZE),
                                                                   generator=g)))
    sample.set_metainfo(dict(img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE)))
    return sample


def pose_sample(g):
    from mmpose.structures import PoseDataSample
    sample = PoseDataSample(
        gt_fields=PixelData(heatmaps=torch.rand(KEYPOINTS, 4, 4, generator=g)),
        gt_instance_labels=InstanceData(keypoint_weights=torch.ones(1, KEYPOINTS)))
    sample.set_metainfo(dict(img_shape=(SIZE, SIZE), input_size=(SIZE, SIZE)))
    return sample


class RandomImages(Dataset):
    def __init__(self, make_sample, n=BATCH * STEPS):
        g = torch.Generator().manual_seed(0)
        self.items = [dict(inputs=torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8,
                                                generator=g), data_samples=make_sample(g))
                      for _ in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


TASKS = {"mmseg": (SEG_MODEL, seg_sample, "backbone.stem.1"),
         "mmpose": (POSE_MODEL, pose_sample, "backbone.bn1")}


def build(scope, model_cfg):
    with DefaultScope.overwrite_default_scope(scope):  # leaves the global scope as it was
        model = MODELS.build(model_cfg)
    model.init_weights()  # here, so that the Runner's call is a no-op and copies stay equal
    return model


@pytest.mark.parametrize("wrapper", ["SAMOptimWrapper", "ARSAMOptimWrapper"])
@pytest.mark.parametrize("scope", sorted(TASKS))
def test_unmodified_model_trains_through_the_runner(tmp_path, scope, wrapper):
    model_cfg, make_sample, bn_name = TASKS[scope]
    model = build(scope, model_cfg)
    data = RandomImages(make_sample)
    kwargs = dict(start_iter=1) if wrapper.startswith("AR") else {}
    expected = reference(model, data, getattr(arsam, wrapper[:-len("OptimWrapper")]), **kwargs)
    runner = Runner(
        model=model, work_dir=str(tmp_path), experiment_name=uuid.uuid4().hex, default_scope=None,
        train_dataloader=dict(dataset=data, batch_size=BATCH, num_workers=0,
                              sampler=dict(type="InfiniteSampler", shuffle=False),
                              collate_fn=dict(type="pseudo_collate")),
        train_cfg=dict(by_epoch=False, max_iters=STEPS),
        optim_wrapper=dict(type=wrapper, optimizer=dict(type="SGD", lr=0.01, momentum=0.9),
                           rho=0.05, **kwargs),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=10 ** 6)))
    runner.train()
    assert runner.optim_wrapper.optimizer.iteration == STEPS
    assert model.get_submodule(bn_name).num_batches_tracked.item() == STEPS
    for (key, value), ref in zip(model.state_dict().items(), expected.state_dict().values()):
        torch.testing.assert_close(value, ref, msg=lambda m: f"{key}: {m}")


def reference(model, data, core_class, **kwargs):
    """The core optimizer alone on the same batches, the closure calling the model's own loss."""
    model = copy.deepcopy(model).train()
    opt = core_class(model.parameters(), base_optimizer=torch.optim.SGD, lr=0.01, momentum=0.9,
                     rho=0.05, model=model, **kwargs)
    for it in range(STEPS):
        batch = model.data_preprocessor(
            pseudo_collate([data[i] for i in range(it * BATCH, (it + 1) * BATCH)]), True)
        opt.step(lambda: model.parse_losses(model(**batch, mode="loss"))[0])
    return model
