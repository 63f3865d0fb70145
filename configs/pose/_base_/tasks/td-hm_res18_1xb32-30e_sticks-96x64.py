# ResNet-18 SimpleBaseline (td-hm_res18_8xb64-210e_coco-256x192) on the offline stick figures
# (pose/synthetic.py, generated under data/sticks_pose on first use): 96x64 inputs (h x w,
# multiples of the backbone's stride 32), trained from scratch (no pretrained download); the
# optimizer comes from ../optim/.
_base_ = './td-hm_res18_8xb64-210e_coco-256x192.py'

train_cfg = dict(max_epochs=30, val_interval=10)
param_scheduler = [
    dict(type='LinearLR', begin=0, end=50, start_factor=0.001, by_epoch=False),
    dict(type='MultiStepLR', begin=0, end=30, milestones=[24, 28], gamma=0.1, by_epoch=True)
]
auto_scale_lr = dict(base_batch_size=32)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=10, max_keep_ckpts=1))

codec = dict(type='MSRAHeatmap', input_size=(64, 96), heatmap_size=(16, 24), sigma=1)
model = dict(backbone=dict(init_cfg=None), head=dict(decoder=codec))

dataset_type = 'StickFigureDataset'
data_root = 'data/sticks_pose/'
generate = dict(num_train=400, num_val=100, size=96)
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomHalfBody'),
    dict(type='RandomBBoxTransform'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs')
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='PackPoseInputs')
]
train_dataloader = dict(
    batch_size=32,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        generate=generate,
        ann_file='annotations/person_keypoints_train.json',
        data_prefix=dict(img='train/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=32,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        generate=generate,
        ann_file='annotations/person_keypoints_val.json',
        bbox_file=None,  # ground-truth boxes
        data_prefix=dict(img='val/'),
        pipeline=val_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/person_keypoints_val.json')
test_evaluator = val_evaluator
