# As mmpose's configs/body_2d_keypoint/topdown_heatmap/coco/
# td-hm_mobilenetv2_8xb64-210e_coco-256x192.py; the optimizer comes from ../optim/.
_base_ = './td-hm_res50_8xb64-210e_coco-256x192.py'
model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        widen_factor=1.,
        out_indices=(7, ),
        init_cfg=dict(type='Pretrained', checkpoint='mmcls://mobilenet_v2')),
    head=dict(in_channels=1280))
