# W4A4 LSQ fine-tuning of the CIFAR-10 MobileNetV2 from its full-precision checkpoint
# (vsam.txt Sec. 4.5, Table 5): train configs/cifar10/mobilenetv2_sgd.py first, or point
# model.fp_checkpoint elsewhere. First conv and classifier at 8 bits. 60 epochs, cosine from 0.01.
_base_ = './resnet18_w4a4.py'

model = dict(net=dict(_delete_=True, type='mobilenet_v2_cifar', num_classes=10),
             fp_checkpoint='work_dirs/mobilenetv2_sgd/epoch_200.pth')
