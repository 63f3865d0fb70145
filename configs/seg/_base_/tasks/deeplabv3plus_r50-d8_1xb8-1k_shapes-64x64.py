# DeepLabV3+-R50-D8 on the offline shapes data (seg/synthetic.py, generated under data/shapes_seg on
# first use), trained from scratch (no pretrained download); the optimizer comes from ../optim/.
_base_ = [
    '../models/deeplabv3plus_r50-d8.py', '../datasets/shapes.py',
    '../default_runtime.py', '../schedules/schedule_shapes.py'
]
crop_size = (64, 64)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    decode_head=dict(num_classes=4),
    auxiliary_head=dict(num_classes=4))
