_base_ = ['../_base_/tasks/fcn_r18-d8_1xb8-1k_shapes-64x64.py', '../_base_/optim/ksam.py']
