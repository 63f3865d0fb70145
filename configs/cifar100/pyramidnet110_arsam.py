_base_ = [
    '../_base_/models/pyramidnet110.py',
    '../_base_/datasets/cifar100.py',
    '../_base_/schedules/cifar_200e.py',
    '../_base_/optimizers/arsam.py',
    '../_base_/default_runtime.py',
]

model = dict(net=dict(num_classes=100))
optim_wrapper = dict(rho=0.1)
