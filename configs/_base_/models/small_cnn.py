model = dict(type='arsam.ImageClassifier',
             net=dict(type='small_cnn', num_classes=10, in_channels=1, width=16))
