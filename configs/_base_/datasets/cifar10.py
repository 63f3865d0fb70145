# CIFAR-10 through torchvision: crop 32 (pad 4), flip and Cutout 16x16 for training (the papers').
# The data is not downloaded unless `download=True` is set on the datasets.
data_preprocessor = dict(type='ImgDataPreprocessor',
                         mean=[125.307, 122.961, 113.8575], std=[51.5865, 50.847, 51.255])
train_dataloader = dict(
    batch_size=128,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='arsam.CIFAR10', data_root='data/cifar10', split='train'))
val_dataloader = dict(
    batch_size=256,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='arsam.CIFAR10', data_root='data/cifar10', split='test'))
test_dataloader = val_dataloader
val_evaluator = dict(type='arsam.Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
# the lr is for 128 images a step: `arsam-train --auto-scale-lr` scales it to the actual batch
auto_scale_lr = dict(enable=False, base_batch_size=128)
