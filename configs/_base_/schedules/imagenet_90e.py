_base_ = './cifar_200e.py'

train_cfg = dict(max_epochs=90)
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=90, T_max=90,
         convert_to_iter_based=True)
]
