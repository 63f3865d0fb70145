_base_ = './cifar_200e.py'

train_cfg = dict(max_epochs=30, val_interval=5)
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=30, T_max=30,
         convert_to_iter_based=True)
]
