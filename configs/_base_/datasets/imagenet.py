# ImageNet as an image folder: data/imagenet/{train,val}/<class>/<image>.JPEG.
# 64 images per GPU: the papers' batch of 512 on 8 GPUs.
_base_ = './cifar10.py'

data_preprocessor = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
train_dataloader = dict(
    batch_size=64, num_workers=8,
    dataset=dict(_delete_=True, type='arsam.ImageNetFolder', data_root='data/imagenet',
                 split='train'))
val_dataloader = dict(
    batch_size=64, num_workers=8,
    dataset=dict(_delete_=True, type='arsam.ImageNetFolder', data_root='data/imagenet',
                 split='val'))
test_dataloader = val_dataloader
# the lr is for 512 images a step: `arsam-train --auto-scale-lr` scales it to the actual batch
auto_scale_lr = dict(enable=False, base_batch_size=512)
