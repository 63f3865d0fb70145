_base_ = [
    '../_base_/models/small_cnn.py',
    '../_base_/datasets/digits.py',
    '../_base_/schedules/digits_30e.py',
    '../_base_/optimizers/ksam.py',
    '../_base_/digits_runtime.py',
]
