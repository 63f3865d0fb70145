# SAM every k-th step, SGD otherwise.
_base_ = './sgd.py'

optim_wrapper = dict(type='PeriodicSAMOptimWrapper', rho=0.05, k=5)
