"""Which parameters the sharpness-aware ascent perturbs in LSQ training.

By default the weights only: a step size s defines the quantization grid, so perturbing it moves
the quantization function itself (every code of the layer shifts at once) rather than probing
the loss around the weights, which is what SAM's ε = ρ·g/‖g‖ (Eq. 2 of vsam.txt) is about. The
step sizes then sit in their own parameter group with ``rho=0``: they are still trained by every
update, they take no part in ε nor in its norm ‖g‖ (arsam/engine.py).

mmengine configs get the same with
``paramwise_cfg=dict(custom_keys={'quantizer.step': dict(rho=0.0)})`` (mmengine's default optim
wrapper constructor copies a custom key's settings into the parameter's group).
"""
from typing import Any, Dict, List

from torch import nn

from .lsq import LSQQuantizer

#: paramwise_cfg custom_keys that keep the step sizes out of the ascent (see module docstring)
STEP_SIZE_KEYS = {"quantizer.step": dict(rho=0.0)}


def lsq_param_groups(model: nn.Module, perturb_step_sizes: bool = False) -> List[Dict[str, Any]]:
    """Parameter groups of ``model`` for a sharpness-aware optimizer.

    ``perturb_step_sizes=False``: [weights and other parameters, LSQ step sizes with rho=0];
    True: one group, the step sizes perturbed like the weights.
    """
    if perturb_step_sizes:
        return [dict(params=list(model.parameters()))]
    steps = [m.step for m in model.modules() if isinstance(m, LSQQuantizer)]
    ids = {id(p) for p in steps}
    groups = [dict(params=[p for p in model.parameters() if id(p) not in ids]),
              dict(params=steps, rho=0.0)]
    return [g for g in groups if g["params"]]
