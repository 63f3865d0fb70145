"""An mmengine image classifier over the plain nets of :mod:`arsam.nets` (``arsam.ImageClassifier``)."""
import torch
from mmengine.model import BaseModel
from torch.nn import functional as F

from ...engine import check_arg
from ...nets import NETS
from ...registry import MODELS


@MODELS.register_module()
class ImageClassifier(BaseModel):
    """Cross-entropy classifier (optional label smoothing) over ``net``, a dict whose ``type``
    names a net of :data:`arsam.nets.NETS` and whose other keys are its arguments.

    Data samples are the labels: an int64 tensor ``[n]`` (``default_collate``) or a list of ints.
    ``forward`` modes: ``'tensor'`` (logits), ``'loss'`` (``dict(loss=mean cross-entropy)``) and
    ``'predict'`` (one ``dict(pred_score, pred_label[, gt_label])`` per sample).
    ``loss_per_sample`` is the per-sample loss protocol of :mod:`arsam.mmlab.per_sample`.
    """

    def __init__(self, net, label_smoothing=0.0, data_preprocessor=None, init_cfg=None):
        check_arg("net", net, isinstance(net, dict) and net.get("type") in NETS,
                  f"a dict with 'type' in {sorted(NETS)}")
        check_arg("label_smoothing", label_smoothing, isinstance(label_smoothing, (int, float))
                  and 0 <= label_smoothing < 1, "in [0, 1)")
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        kwargs = {k: v for k, v in net.items() if k != "type"}
        self.net = NETS[net["type"]](**kwargs)
        self.label_smoothing = label_smoothing

    def forward(self, inputs, data_samples=None, mode="tensor"):
        if mode == "tensor":
            return self.net(inputs)
        if mode == "loss":
            return dict(loss=self.loss_per_sample(inputs, data_samples).mean())
        if mode == "predict":
            scores = self.net(inputs).softmax(dim=1)
            predictions = [dict(pred_score=s, pred_label=s.argmax()) for s in scores]
            if data_samples is not None:
                for prediction, label in zip(predictions, self._labels(data_samples, inputs)):
                    prediction["gt_label"] = label
            return predictions
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    def loss_per_sample(self, inputs, data_samples):
        """Cross-entropy of each sample, ``[n]``; its mean is the ``'loss'`` of ``forward``."""
        return F.cross_entropy(self.net(inputs), self._labels(data_samples, inputs),
                               reduction="none", label_smoothing=self.label_smoothing)

    @staticmethod
    def _labels(data_samples, inputs):
        return torch.as_tensor(data_samples, dtype=torch.long, device=inputs.device)
