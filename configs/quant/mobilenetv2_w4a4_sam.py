_base_ = ['./_base_/mobilenetv2_w4a4.py', '../_base_/optimizers/sam.py']

# fine-tuning lr; LSQ step sizes kept out of the sharpness-aware ascent (docs/quant.md)
optim_wrapper = dict(optimizer=dict(lr=0.01),
                     paramwise_cfg=dict(custom_keys={'quantizer.step': dict(rho=0.0)}))
