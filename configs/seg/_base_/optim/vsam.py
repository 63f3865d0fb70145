# vSAM (vsam.txt): the decomposed SAM gradient's PSF sampled by the variation schedule and
# reused, around mmseg's SGD.
_base_ = './sgd.py'
optim_wrapper = dict(type='VSAMOptimWrapper', rho=0.05, alpha=0.1, gamma=0.7)
