# Fashion-MNIST through mmpretrain's own FashionMNIST dataset, ImageClassifier and ResNet_CIFAR:
# 60000 train / 10000 test 28x28 grayscale images, read from the raw IDX files that `make data`
# puts in data/FashionMNIST/raw (torchvision's layout, which mmpretrain reads as they are; nothing
# is downloaded). ResNet-18 with the CIFAR stem (3x3 conv, stride 1, BatchNorm) on one input
# channel; training: random crop 28 after 2 pixels of zero padding and a horizontal flip.
# `arsam` registers the optim wrappers, `arsam.mmlab.pretrain` the per-sample losses of
# mmpretrain's ImageClassifier (ESAM, K-SAM). Trains with arsam-train and mmpretrain's
# tools/train.py alike.
_base_ = ['mmpretrain::_base_/default_runtime.py']
custom_imports = dict(imports=['arsam', 'arsam.mmlab.pretrain'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, in_channels=1, num_stages=4,
                  out_indices=(3, ), style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=10, in_channels=512,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))

data_root = 'data/FashionMNIST/raw'
# the training set's mean and std in pixel units (arsam.fashion_mnist.MEAN, STD x 255)
data_preprocessor = dict(num_classes=10, mean=[72.94], std=[90.02], to_rgb=False)
train_pipeline = [
    dict(type='RandomCrop', crop_size=28, padding=2),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=128, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='FashionMNIST', data_prefix=data_root, split='train', download=False,
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=256, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='FashionMNIST', data_prefix=data_root, split='test', download=False,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

# the optimizer: ../../_base_/optimizers/ (SGD lr 0.05, momentum 0.9, weight decay 5e-4; the
# SAM family on it), named by each config beside this one
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=30, T_max=30,
                        convert_to_iter_based=True)]
train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=128)

# mmpretrain's runtime (mmpretrain::_base_/default_runtime.py; arsam-train uses gloo for its
# nccl when there is no GPU), checkpoints every 5 epochs (the 3 latest and the best), a fixed seed
default_hooks = dict(checkpoint=dict(interval=5, max_keep_ckpts=3, save_best='accuracy/top1',
                                     rule='greater'))
randomness = dict(seed=0)
