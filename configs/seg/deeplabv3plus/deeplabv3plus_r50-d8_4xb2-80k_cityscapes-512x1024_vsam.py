_base_ = ['../_base_/tasks/deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py', '../_base_/optim/vsam.py']
optim_wrapper = dict(start_iter=1200)  # 1.5 % of the run's iterations
