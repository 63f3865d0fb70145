_base_ = ['../_base_/tasks/td-hm_mobilenetv2_8xb64-210e_coco-256x192.py', '../_base_/optim/arsam.py']
