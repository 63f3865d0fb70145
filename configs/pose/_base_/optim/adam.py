# mmpose's optimizer for top-down heatmap models (Adam, lr 5e-4). 'arsam' registers the optim
# wrappers (and, in an environment set up without `make setup`, the mmcv._ext stand-in).
custom_imports = dict(imports=['arsam', 'pose'], allow_failed_imports=False)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=5e-4))
