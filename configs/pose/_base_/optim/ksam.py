# K-SAM (ksam.txt): both SAM gradients on the top-k loss samples (per-sample losses:
# pose/per_sample.py) around mmpose's Adam.
_base_ = './adam.py'
optim_wrapper = dict(type='KSAMOptimWrapper', rho=0.05, k1=0.125, k2=0.5)
