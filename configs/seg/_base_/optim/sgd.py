# mmseg's optimizer (SGD, lr 0.01, momentum 0.9, wd 5e-4). 'arsam' registers the optim wrappers
# (and, in an environment set up without `make setup`, the mmcv._ext stand-in mmseg.models needs).
custom_imports = dict(imports=['arsam', 'seg'], allow_failed_imports=False)
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
