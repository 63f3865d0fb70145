model = dict(type='arsam.ImageClassifier', net=dict(type='resnet50', num_classes=1000))
