# K-SAM (ksam.txt): both SAM gradients on the top-k loss samples (per-sample losses:
# seg/per_sample.py) around mmseg's SGD.
_base_ = './sgd.py'
optim_wrapper = dict(type='KSAMOptimWrapper', rho=0.05, k1=0.125, k2=0.5)
