# ARSAM around mmpose's Adam: the PSF sampled and reused by the 'matched' schedule
# (docs/arsam.md), after 3 warm-up epochs of SAM.
_base_ = './adam.py'
optim_wrapper = dict(type='ARSAMOptimWrapper', rho=0.05)
