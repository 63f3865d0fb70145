# vsam.txt Table 5 (LSQ W4A4 on CIFAR-10) in LSQ's own setting (Esser et al., 2020): one step
# size per layer, first and last layer at 8 bits, 90 epochs of cosine decay from lr 0.01 with
# weight decay 1e-4 (the leaf configs set lr and weight decay next to the optimizer). vSAM does
# not state its schedule; this is LSQ's. Train configs/cifar10/resnet18_sgd.py first.
_base_ = '../../_base_/resnet18_w4a4.py'

model = dict(quantize=dict(per_channel=False))
train_cfg = dict(max_epochs=90)
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=90, T_max=90,
         convert_to_iter_based=True)
]
