model = dict(type='arsam.ImageClassifier', net=dict(type='cifar_resnet18', num_classes=10))
