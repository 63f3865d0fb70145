# W4A4 LSQ fine-tuning of SmallCNN on the offline digits from its full-precision checkpoint:
# train configs/digits/smallcnn_sgd.py first (30 epochs), then 15 epochs here from lr 0.01.
_base_ = [
    '../../_base_/models/small_cnn.py',
    '../../_base_/datasets/digits.py',
    '../../_base_/schedules/digits_30e.py',
    '../../_base_/digits_runtime.py',
]
custom_imports = dict(imports=['arsam', 'arsam.mmlab.classification', 'quant.mmlab'],
                      allow_failed_imports=False)
model = dict(type='QuantizedClassifier', fp_checkpoint='work_dirs/smallcnn_sgd/epoch_30.pth',
             quantize=dict(w_bits=4, a_bits=4, first_last_bits=8))
train_cfg = dict(max_epochs=15)
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=15, T_max=15,
         convert_to_iter_based=True)
]
