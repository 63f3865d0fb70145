# K-SAM: ascent on the top k1 = B/8 losses, descent on the top k2 = B/2 (16 and 64 of 128).
_base_ = './sgd.py'

optim_wrapper = dict(type='KSAMOptimWrapper', rho=0.05, k1=0.125, k2=0.5)
