# vSAM (vsam.txt) as the authors' code runs it: ARSAM with schedule='vsam' and the official
# settings (N 50, M 5, s1 1, quota per window, clamped change rates, gamma reused for 6 steps,
# 3 warm-up epochs, norms on the last 10 tensors; docs/arsam.md). vsam.txt: gamma 0.7 for
# ResNet-18 (0.9 for WRN/PyramidNet), alpha 0.1 on CIFAR-10 (0.13 on CIFAR-100).
_base_ = './sgd.py'

optim_wrapper = dict(type='VSAMOptimWrapper', rho=0.05, schedule='vsam', alpha=0.1, gamma=0.7)
