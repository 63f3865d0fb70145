# Full-precision MobileNetV1 for the LSQ W4A4 configs of configs/quant/table5/.
_base_ = [
    '../_base_/models/mobilenetv1_cifar.py',
    '../_base_/datasets/cifar10.py',
    '../_base_/schedules/cifar_200e.py',
    '../_base_/optimizers/sgd.py',
    '../_base_/default_runtime.py',
]
