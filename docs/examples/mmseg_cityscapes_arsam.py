# mmseg's own FCN-R18-D8 Cityscapes config (from the installed mmsegmentation, `mmseg::`)
# switched to ARSAM; needs the Cityscapes data under data/cityscapes, as mmseg documents.
#
#   arsam-train docs/examples/mmseg_cityscapes_arsam.py
_base_ = 'mmseg::fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py'

custom_imports = dict(imports=['arsam'], allow_failed_imports=False)  # registers the wrappers
optim_wrapper = dict(type='ARSAMOptimWrapper', rho=0.05, start_iter=1200,  # 1.5 % of 80k
                     norm_params=['decode_head'])
