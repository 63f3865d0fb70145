# As mmseg's configs/deeplabv3plus/deeplabv3plus_r50-d8_4xb4-40k_voc12aug-512x512.py;
# the optimizer comes from ../optim/.
_base_ = [
    '../models/deeplabv3plus_r50-d8.py', '../datasets/pascal_voc12_aug.py',
    '../default_runtime.py', '../schedules/schedule_40k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=21),
    auxiliary_head=dict(num_classes=21))
