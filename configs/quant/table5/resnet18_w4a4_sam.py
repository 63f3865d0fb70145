_base_ = ['./_base_/resnet18_w4a4.py', '../../_base_/optimizers/sam.py']

# LSQ's fine-tuning lr and 4-bit weight decay; LSQ step sizes kept out of the sharpness-aware
# ascent (docs/quant.md)
optim_wrapper = dict(optimizer=dict(lr=0.01, weight_decay=1e-4),
                     paramwise_cfg=dict(custom_keys={'quantizer.step': dict(rho=0.0)}))
