# mmseg's optimizer (SGD, lr 0.01, momentum 0.9, wd 5e-4). 'arsam' comes first: it installs the
# mmcv._ext stand-in that mmseg.models needs with mmcv-lite, and registers the optim wrappers.
custom_imports = dict(imports=['arsam', 'seg'], allow_failed_imports=False)
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
