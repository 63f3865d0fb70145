# FSDP through mmengine's FlexibleRunner (docs/mmengine.md, "FSDP"): add this file to a config's
# _base_ list and train under torchrun (`arsam-train CONFIG --launcher pytorch`). The optim
# wrapper stays the config's (SAMOptimWrapper, ..., ARSAMOptimWrapper; a loss_scale becomes
# FSDP's ShardedGradScaler).
runner_type = 'ArsamFlexibleRunner'  # FlexibleRunner with weights-only checkpoint loading
strategy = dict(
    type='ArsamFSDPStrategy',  # FSDPStrategy whose resume works on torch >= 2.1
    # use_orig_params=True (mmengine's default) keeps the model's tensors: ASAM and ESAM need
    # them; add auto_wrap_policy=..., mixed_precision=dict(param_dtype='bfloat16') etc. here
    model_wrapper=dict(type='MMFullyShardedDataParallel'),
    # one checkpoint file of whole tensors written by rank 0, loadable weights-only ('local':
    # one file of ShardedTensors per rank, which only full unpickling loads)
    state_dict_cfg='full')
