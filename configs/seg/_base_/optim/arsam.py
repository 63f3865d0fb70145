# ARSAM: the PSF sampled by the autoregressive schedule and reused, around mmseg's SGD.
_base_ = './sgd.py'
optim_wrapper = dict(type='ARSAMOptimWrapper', rho=0.05, alpha=0.1, gamma=0.7)
