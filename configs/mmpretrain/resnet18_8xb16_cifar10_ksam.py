# mmpretrain's own CIFAR-10 ResNet-18 recipe, unchanged, trained with K-SAM (K1 = B/8, K2 = B/2),
# on the per-sample losses `arsam.mmlab.pretrain` registers for mmpretrain's ImageClassifier.
_base_ = ['mmpretrain::resnet/resnet18_8xb16_cifar10.py']
custom_imports = dict(imports=['arsam', 'arsam.mmlab.pretrain'], allow_failed_imports=False)
optim_wrapper = dict(type='KSAMOptimWrapper', rho=0.05, k1=0.125, k2=0.5)
