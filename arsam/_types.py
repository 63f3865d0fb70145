"""Type aliases of the public API (the package ships ``py.typed``)."""
from typing import Any, Callable, Dict, Iterable, Optional, Type, Union

import torch

#: ``params`` of an optimizer: the model, tensors or param-group dicts; None when
#: ``base_optimizer`` is an already built optimizer (its groups are used)
Params = Optional[Union[torch.nn.Module, Iterable[torch.Tensor], Iterable[Dict[str, Any]]]]
#: ``base_optimizer``: an optimizer class (built with the remaining keyword arguments) or a
#: built instance
BaseOptimizer = Union[Type[torch.optim.Optimizer], torch.optim.Optimizer]
#: ``closure(indices=None)``: a forward pass only, returning per-sample losses of shape [n] (or
#: a scalar for the optimizers that never select samples)
Closure = Callable[..., torch.Tensor]
