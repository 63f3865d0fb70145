_base_ = ['../_base_/tasks/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py', '../_base_/optim/vsam.py']
optim_wrapper = dict(start_iter=1200)  # 1.5 % of the run's iterations
