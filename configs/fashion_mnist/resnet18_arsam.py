_base_ = ['./_base_/resnet18_fashion_mnist.py', '../_base_/optimizers/arsam.py']
