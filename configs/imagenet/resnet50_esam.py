_base_ = [
    '../_base_/models/resnet50.py',
    '../_base_/datasets/imagenet.py',
    '../_base_/schedules/imagenet_90e.py',
    '../_base_/optimizers/esam.py',
    '../_base_/default_runtime.py',
]

optim_wrapper = dict(optimizer=dict(lr=0.2, weight_decay=1e-4), gamma=0.7)
