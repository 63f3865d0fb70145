# An existing mmseg config switched to ARSAM: inherit it and name the optim wrapper. The model,
# data, schedule and the SGD inside (lr 0.01, momentum 0.9, weight decay 5e-4) stay the config's.
# This one trains mmseg's FCN-R18-D8 on the project's offline shapes data (generated on first
# use under data/shapes_seg):
#
#   arsam-train docs/examples/mmseg_arsam.py
#   tensorboard --logdir work_dirs
#
# For an mmseg model-zoo config, see mmseg_cityscapes_arsam.py.
_base_ = '../../configs/seg/fcn/fcn_r18-d8_1xb8-1k_shapes-64x64_sgd.py'

optim_wrapper = dict(
    type='ARSAMOptimWrapper',  # was OptimWrapper (registered by custom_imports=['arsam', ...])
    rho=0.05,
    # ARSAM's warm-up of plain SAM in steps: 1.5 % of the 1k iterations, as the authors' 3 of
    # 200 epochs (default: 3 passes over the training data, at most 10 % of the run)
    start_iter=15,
    # ARSAM's schedule measures its norms on the last layers: the decode head
    norm_params=['decode_head'])
