# An existing mmpose config switched to ARSAM: inherit it and name the optim wrapper. The model,
# data, schedule and the Adam inside (lr 5e-4) stay the config's. This one trains mmpose's
# top-down heatmap ResNet-18 on the project's offline stick figures (generated on first use
# under data/sticks_pose):
#
#   arsam-train docs/examples/mmpose_arsam.py
#   tensorboard --logdir work_dirs
#
# For an mmpose model-zoo config, see mmpose_coco_arsam.py.
_base_ = '../../configs/pose/topdown_heatmap/td-hm_res18_1xb32-30e_sticks-96x64_adam.py'

# was OptimWrapper; the loop is epoch-based, so ARSAM's 3 warm-up epochs of plain SAM come from
# it (warmup_epochs=3 by default)
optim_wrapper = dict(type='ARSAMOptimWrapper', rho=0.05)
