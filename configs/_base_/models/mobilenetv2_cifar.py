model = dict(type='arsam.ImageClassifier', net=dict(type='mobilenet_v2_cifar', num_classes=10))
