"""Top-k accuracy in arsam's METRICS registry (``arsam.Accuracy``)."""
import torch
from mmengine.evaluator import BaseMetric

from ...registry import METRICS


@METRICS.register_module()
class Accuracy(BaseMetric):
    """Top-k accuracy in percent, as ``accuracy/top{k}``, for each ``k`` in ``topk`` smaller
    than the number of classes (top-1 always). Reads ``pred_score`` and ``gt_label`` of the
    classifier's predictions."""
    default_prefix = "accuracy"

    def __init__(self, topk=(1, 5), collect_device="cpu", prefix=None):
        if not (isinstance(topk, (tuple, list)) and topk
                and all(isinstance(k, int) and k >= 1 for k in topk)):
            raise ValueError(f"topk must be a non-empty sequence of ints >= 1, got {topk!r}")
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(topk)

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            self.results.append((sample["pred_score"].cpu(), int(sample["gt_label"])))

    def compute_metrics(self, results):
        scores = torch.stack([score for score, _ in results])
        labels = torch.tensor([label for _, label in results])
        ks = [k for k in self.topk if k == 1 or k < scores.shape[1]]
        top = scores.topk(max(ks), dim=1).indices == labels[:, None]
        return {f"top{k}": top[:, :k].any(1).float().mean().item() * 100 for k in ks}
