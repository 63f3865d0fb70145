# mmpretrain's own CIFAR-10 ResNet-18 recipe, unchanged, trained with ESAM (β 0.6, γ 0.5):
# `arsam` registers the wrapper, `arsam.mmlab.pretrain` the per-sample losses of mmpretrain's
# ImageClassifier that ESAM's data selection needs. Run it with mmpretrain's tools/train.py or
# arsam-train; the CIFAR-10 data goes to data/cifar10 as mmpretrain documents.
_base_ = ['mmpretrain::resnet/resnet18_8xb16_cifar10.py']
custom_imports = dict(imports=['arsam', 'arsam.mmlab.pretrain'], allow_failed_imports=False)
optim_wrapper = dict(type='ESAMOptimWrapper', rho=0.05, beta=0.6, gamma=0.5)
