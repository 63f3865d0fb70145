# td-hm_res50_8xb64-210e_coco-256x192 with a ResNet-18 backbone (SimpleBaseline's smallest).
_base_ = './td-hm_res50_8xb64-210e_coco-256x192.py'
model = dict(
    backbone=dict(
        depth=18,
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    head=dict(in_channels=512))
