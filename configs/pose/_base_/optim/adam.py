# mmpose's optimizer for top-down heatmap models (Adam, lr 5e-4). 'arsam' comes first: it installs
# the mmcv._ext stand-in that mmpose.models needs with mmcv-lite, and registers the optim wrappers.
custom_imports = dict(imports=['arsam', 'pose'], allow_failed_imports=False)
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=5e-4))
