# Digits has 23 iterations per epoch: log every 10, checkpoint at each evaluation.
_base_ = './default_runtime.py'

default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=5))
log_processor = dict(window_size=10)
