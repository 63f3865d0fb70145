# MobileNetV1 as the vSAM authors ran it on CIFAR (the "MobileNets" of vsam.txt Table 5).
model = dict(type='arsam.ImageClassifier', net=dict(type='mobilenet_v1_cifar', num_classes=10))
