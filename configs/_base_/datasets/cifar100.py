_base_ = './cifar10.py'

data_preprocessor = dict(mean=[129.304, 124.070, 112.434], std=[68.170, 65.392, 70.418])
train_dataloader = dict(dataset=dict(type='arsam.CIFAR100', data_root='data/cifar100'))
val_dataloader = dict(dataset=dict(type='arsam.CIFAR100', data_root='data/cifar100'))
test_dataloader = val_dataloader
