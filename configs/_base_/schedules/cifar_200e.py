# 200 epochs with cosine decay (per iteration) of the optimizer's lr, as in SAM/ESAM/vSAM.
train_cfg = dict(by_epoch=True, max_epochs=200, val_interval=1)
val_cfg = dict()
test_cfg = dict()
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=200, T_max=200,
         convert_to_iter_based=True)
]
