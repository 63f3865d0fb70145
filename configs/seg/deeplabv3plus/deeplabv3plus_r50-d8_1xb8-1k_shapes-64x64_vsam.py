_base_ = ['../_base_/tasks/deeplabv3plus_r50-d8_1xb8-1k_shapes-64x64.py', '../_base_/optim/vsam.py']
optim_wrapper = dict(start_iter=15)  # 1.5 % of the run's iterations
