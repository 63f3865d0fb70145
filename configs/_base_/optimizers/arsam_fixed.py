# ARSAM at a fixed, evenly spaced rate (schedule 'fixed': the ablation of the adaptive rate),
# the PSF reused whole between samples, after the 3 warm-up epochs of SAM.
_base_ = './sgd.py'

optim_wrapper = dict(type='ARSAMOptimWrapper', rho=0.05, schedule='fixed', rate=0.2)
