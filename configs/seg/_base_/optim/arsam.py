# ARSAM around mmseg's SGD: the PSF sampled and reused by the 'matched' schedule (docs/arsam.md),
# norms measured on the decode head; each task config gives the warm-up in steps (start_iter),
# the 1.5 % of the run the seg benchmarks use, instead of the default (3 epochs, at most 10 %).
_base_ = './sgd.py'
optim_wrapper = dict(type='ARSAMOptimWrapper', rho=0.05, norm_params=['decode_head'])
