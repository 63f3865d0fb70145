# The base optimizer of every variant (the papers' CIFAR setting); the SAM family builds on it.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4))
