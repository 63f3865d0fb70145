# ARSAM around mmseg's SGD: the PSF sampled and reused by the 'matched' schedule (docs/arsam.md),
# norms measured on the decode head; each task config gives the warm-up in steps (start_iter:
# mmseg's loops are iteration-based).
_base_ = './sgd.py'
optim_wrapper = dict(type='ARSAMOptimWrapper', rho=0.05, norm_params=['decode_head'])
