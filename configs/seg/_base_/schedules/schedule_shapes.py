# A CPU-sized schedule for the offline shapes data: mmseg's poly schedule over 1k iterations.
_base_ = './schedule_80k.py'
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=1000, by_epoch=False)
]
train_cfg = dict(max_iters=1000, val_interval=500)
default_hooks = dict(
    logger=dict(interval=20), checkpoint=dict(interval=500, max_keep_ckpts=1))
