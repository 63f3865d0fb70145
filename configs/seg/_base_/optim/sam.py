# SAM (Foret et al., 2021) around mmseg's SGD.
_base_ = './sgd.py'
optim_wrapper = dict(type='SAMOptimWrapper', rho=0.05)
