# ESAM (esam.txt): stochastic weight perturbation (beta) and sharpness-sensitive data selection
# (gamma, needs per-sample losses: pose/per_sample.py) around mmpose's Adam.
_base_ = './adam.py'
optim_wrapper = dict(type='ESAMOptimWrapper', rho=0.05, beta=0.6, gamma=0.5)
