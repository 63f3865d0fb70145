# ARSAM: vSAM's PSF reuse with the autoregressive sampling schedule; same hyperparameters.
_base_ = './vsam.py'

optim_wrapper = dict(type='ARSAMOptimWrapper')
