# vSAM (vsam.txt) around mmseg's SGD, as the authors' code runs it (schedule='vsam'). The
# schedule's norms are measured on the decode head (the auxiliary head is registered after it);
# mmseg's loops are iteration-based, so each task config gives the warm-up in steps (start_iter:
# 1.5 % of the run, as the authors' 3 of 200 epochs).
_base_ = './sgd.py'
optim_wrapper = dict(type='VSAMOptimWrapper', rho=0.05, schedule='vsam', alpha=0.1, gamma=0.7,
                     norm_params=['decode_head'])
