# As mmseg's configs/deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py;
# the optimizer comes from ../optim/.
_base_ = [
    '../models/deeplabv3plus_r50-d8.py', '../datasets/ade20k.py',
    '../default_runtime.py', '../schedules/schedule_80k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150))
