# ARSAM: the PSF sampled and reused by our 'matched' schedule (the default; docs/arsam.md),
# after the authors' 3 warm-up epochs of SAM.
_base_ = './sgd.py'

optim_wrapper = dict(type='ARSAMOptimWrapper', rho=0.05)
