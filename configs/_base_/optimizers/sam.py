_base_ = './sgd.py'

optim_wrapper = dict(type='SAMOptimWrapper', rho=0.05)
