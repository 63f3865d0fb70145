# vSAM: PSF reuse with variance-driven sampling (window K=50, M=5 slices).
# gamma 0.7 is for ResNet-18 (0.9 for WRN/PyramidNet), alpha 0.1 for CIFAR-10 (0.13 for CIFAR-100).
_base_ = './sgd.py'

optim_wrapper = dict(type='VSAMOptimWrapper', rho=0.05, alpha=0.1, gamma=0.7, window=50,
                     slices=5, max_rate=0.8)
