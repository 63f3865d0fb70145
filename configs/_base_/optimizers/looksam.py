# LookSAM (Liu et al., CVPR 2022): SAM every k = 5 steps, the stored g_v reused with weight 0.7.
_base_ = './sgd.py'

optim_wrapper = dict(type='LookSAMOptimWrapper', rho=0.05, k=5, alpha=0.7)
