_base_ = ['../_base_/tasks/deeplabv3plus_r50-d8_1xb8-1k_shapes-64x64.py', '../_base_/optim/ksam.py']
