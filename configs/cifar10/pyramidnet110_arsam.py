_base_ = [
    '../_base_/models/pyramidnet110.py',
    '../_base_/datasets/cifar10.py',
    '../_base_/schedules/cifar_200e.py',
    '../_base_/optimizers/arsam.py',
    '../_base_/default_runtime.py',
]

optim_wrapper = dict(rho=0.1)
