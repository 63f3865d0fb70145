# As mmseg's configs/deeplabv3plus/deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py;
# the optimizer comes from ../optim/.
_base_ = [
    '../models/deeplabv3plus_r50-d8.py', '../datasets/cityscapes.py',
    '../default_runtime.py', '../schedules/schedule_80k.py'
]
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor)
