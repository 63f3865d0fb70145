# As resnet18_w4a4.py with the vSAM authors' MobileNetV1: train
# configs/cifar10/mobilenetv1_sgd.py first.
_base_ = './resnet18_w4a4.py'

model = dict(net=dict(_delete_=True, type='mobilenet_v1_cifar', num_classes=10),
             fp_checkpoint='work_dirs/mobilenetv1_sgd/epoch_200.pth')
