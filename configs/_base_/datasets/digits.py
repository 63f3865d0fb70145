# scikit-learn's bundled digits: 1437 train / 360 test 8x8 grayscale images, offline.
# Pixel values are in [0, 1]; mean and std are those of the train split.
_base_ = './cifar10.py'

data_preprocessor = dict(mean=[0.3056], std=[0.3761])
train_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='arsam.Digits', split='train', label_noise=0.0))
val_dataloader = dict(
    batch_size=360, num_workers=0, persistent_workers=False,
    dataset=dict(_delete_=True, type='arsam.Digits', split='test'))
test_dataloader = val_dataloader
auto_scale_lr = dict(base_batch_size=64)
