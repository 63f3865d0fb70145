model = dict(type='arsam.ImageClassifier',
             net=dict(type='wide_resnet', depth=28, widen=10, num_classes=10))
