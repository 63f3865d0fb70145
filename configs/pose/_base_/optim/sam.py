# SAM (Foret et al., 2021) around mmpose's Adam.
_base_ = './adam.py'
optim_wrapper = dict(type='SAMOptimWrapper', rho=0.05)
