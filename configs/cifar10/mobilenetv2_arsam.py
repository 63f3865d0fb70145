_base_ = [
    '../_base_/models/mobilenetv2_cifar.py',
    '../_base_/datasets/cifar10.py',
    '../_base_/schedules/cifar_200e.py',
    '../_base_/optimizers/arsam.py',
    '../_base_/default_runtime.py',
]
