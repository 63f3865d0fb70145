# vSAM (vsam.txt) around mmpose's Adam, as the authors' code runs it (schedule='vsam'; 3 warm-up
# epochs of SAM, norms on the last 10 tensors: the head's).
_base_ = './adam.py'
optim_wrapper = dict(type='VSAMOptimWrapper', rho=0.05, schedule='vsam', alpha=0.1, gamma=0.7)
