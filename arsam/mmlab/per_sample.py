"""The per-sample loss protocol: how ESAM/KSAM get one loss per sample from an mmengine model.

A model provides per-sample losses either by a method
``loss_per_sample(inputs, data_samples) -> Tensor[n]`` or by a function registered here for its
class (so that mmseg's and mmpose's own classes stay unmodified):

    @register_per_sample_loss(EncoderDecoder)
    def _(model, inputs, data_samples): ...

``inputs``/``data_samples`` are what the model's data_preprocessor returns. The losses must be
computed with the model's own configured loss and equal, averaged, its usual training loss.
"""
PER_SAMPLE_LOSSES = {}


def register_per_sample_loss(model_class):
    """Register ``fn(model, inputs, data_samples) -> Tensor[n]`` for ``model_class``."""
    def register(fn):
        PER_SAMPLE_LOSSES[model_class] = fn
        return fn
    return register


def find_per_sample_loss(model):
    """The per-sample loss function for ``model`` (a method or a registered one), or None."""
    if callable(getattr(model, "loss_per_sample", None)):
        return lambda m, inputs, data_samples: m.loss_per_sample(inputs, data_samples)
    for cls in type(model).__mro__:
        if cls in PER_SAMPLE_LOSSES:
            return PER_SAMPLE_LOSSES[cls]
    return None
