# W4A4 LSQ fine-tuning of the CIFAR-10 ResNet-18 from its full-precision checkpoint
# (vsam.txt Sec. 4.5, Table 5): train configs/cifar10/resnet18_sgd.py first, or point
# model.fp_checkpoint elsewhere. First conv and fc at 8 bits. 60 epochs, cosine from lr 0.01.
_base_ = [
    '../../_base_/models/cifar_resnet18.py',
    '../../_base_/datasets/cifar10.py',
    '../../_base_/schedules/cifar_200e.py',
    '../../_base_/default_runtime.py',
]
custom_imports = dict(imports=['arsam', 'arsam.mmlab.classification', 'quant.mmlab'],
                      allow_failed_imports=False)
model = dict(type='QuantizedClassifier', fp_checkpoint='work_dirs/resnet18_sgd/epoch_200.pth',
             quantize=dict(w_bits=4, a_bits=4, first_last_bits=8))
train_cfg = dict(max_epochs=60)
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=60, T_max=60,
         convert_to_iter_based=True)
]
