model = dict(type='arsam.ImageClassifier',
             net=dict(type='pyramidnet', depth=110, alpha=270, num_classes=10))
