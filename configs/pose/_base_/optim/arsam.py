# ARSAM: the PSF sampled by the autoregressive schedule and reused, around mmpose's Adam.
_base_ = './adam.py'
optim_wrapper = dict(type='ARSAMOptimWrapper', rho=0.05, alpha=0.1, gamma=0.7)
