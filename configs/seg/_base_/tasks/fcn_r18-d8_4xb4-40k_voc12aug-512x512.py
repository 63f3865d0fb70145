# As mmseg's configs/fcn/fcn_r50-d8_4xb4-40k_voc12aug-512x512.py with ResNetV1c-18;
# the optimizer comes from ../optim/.
_base_ = [
    '../models/fcn_r18-d8.py', '../datasets/pascal_voc12_aug.py',
    '../default_runtime.py', '../schedules/schedule_40k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=21),
    auxiliary_head=dict(num_classes=21))
