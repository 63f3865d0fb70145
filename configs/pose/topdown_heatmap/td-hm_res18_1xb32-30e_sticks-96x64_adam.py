_base_ = ['../_base_/tasks/td-hm_res18_1xb32-30e_sticks-96x64.py', '../_base_/optim/adam.py']
