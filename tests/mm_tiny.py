"""Shared fixtures of the tests/test_mm_*.py files: a tiny mmengine classifier, data, a Runner."""
import copy
import uuid

import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.structures import BaseDataElement
from torch import nn
from torch.utils.data import Dataset

import arsam  # noqa: F401  (registers the wrappers)

BATCH = 8


def labels(data_samples):
    return torch.stack([d.label for d in data_samples])


class TinyClassifier(BaseModel):
    """Conv + BatchNorm + linear on 1x6x6 images, 3 classes; records autocast state per forward."""

    def __init__(self, bn=True):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4) if bn else nn.Identity()
        self.fc = nn.Linear(4, 3)
        self.autocast_log = []

    def logits(self, inputs):
        self.autocast_log.append(torch.is_autocast_enabled("cpu"))
        return self.fc(F.relu(self.bn(self.conv(inputs))).mean((2, 3))).float()

    def forward(self, inputs, data_samples=None, mode="tensor"):
        if mode == "loss":
            return {"loss": F.cross_entropy(self.logits(inputs), labels(data_samples))}
        return self.logits(inputs)


class PerSampleClassifier(TinyClassifier):
    """TinyClassifier with the per-sample loss protocol (arsam/mmlab/per_sample.py)."""

    def loss_per_sample(self, inputs, data_samples):
        return F.cross_entropy(self.logits(inputs), labels(data_samples), reduction="none")


class TinyData(Dataset):
    def __init__(self, n=16, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, 6, 6, generator=g)
        self.y = torch.randint(0, 3, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], data_samples=BaseDataElement(label=self.y[i]))

    def batch(self, it, batch=BATCH, rank=0, world=1):
        """Samples of iteration ``it`` as the Runner's unshuffled DefaultSampler serves them."""
        per_rank = list(range(rank, len(self), world))
        start = (it * batch) % len(per_rank)
        idx = torch.tensor(per_rank[start:start + batch])
        return self.x[idx], self.y[idx]


def make_model(cls=PerSampleClassifier, seed=0, **kwargs):
    torch.manual_seed(seed)
    return cls(**kwargs)


def optim_cfg(wrapper, lr=0.1, **kwargs):
    return dict(type=wrapper, optimizer=dict(type="SGD", lr=lr, momentum=0.9, weight_decay=5e-4),
                **kwargs)


def make_runner(work_dir, model, optim_wrapper, max_iters=4, data=None, runner_class=Runner,
                **kwargs):
    cfg = dict(
        model=model, work_dir=str(work_dir), experiment_name=uuid.uuid4().hex,
        train_dataloader=dict(dataset=data or TinyData(), batch_size=BATCH, num_workers=0,
                              sampler=dict(type="InfiniteSampler", shuffle=False),
                              collate_fn=dict(type="default_collate")),
        train_cfg=dict(by_epoch=False, max_iters=max_iters), optim_wrapper=optim_wrapper,
        default_hooks=dict(logger=dict(type="LoggerHook", interval=1),
                           checkpoint=dict(type="CheckpointHook", interval=10 ** 6)),
        log_processor=dict(by_epoch=False, window_size=1),
        default_scope=None)  # no global DefaultScope left behind for other tests
    cfg.update(kwargs)
    return runner_class(**cfg)


def reference(model, core_class, steps, data=None, lr=0.1, between=None, clip=None,
              amp_dtype=None, on_copy=None, **kwargs):
    """Train a copy of ``model`` with the core optimizer alone on the Runner's batches.

    ``between(opt, step)`` runs before each step (schedules); ``clip`` is a max gradient norm;
    ``amp_dtype`` autocasts each forward; ``on_copy(model)`` runs on the copy before training
    (hooks). Returns the model and the per-step stats.
    """
    model = copy.deepcopy(model).train()
    if on_copy is not None:
        on_copy(model)
    data = data or TinyData()
    opt = core_class(model.parameters(), base_optimizer=torch.optim.SGD, lr=lr, momentum=0.9,
                     weight_decay=5e-4, model=model, **kwargs)
    stats = []
    for it in range(steps):
        x, y = data.batch(it)

        def closure(indices=None):
            xb, yb = (x, y) if indices is None else (x[indices], y[indices])
            with torch.autocast("cpu", dtype=amp_dtype, enabled=amp_dtype is not None):
                return F.cross_entropy(model.logits(xb), yb, reduction="none")
        if between is not None:
            between(opt, it)
        opt.compute_gradient(closure)
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.base_optimizer.step()
        stats.append(dict(opt.stats))
    return model, stats


def assert_same_weights(a, b, **tol):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, msg=lambda m: f"{name}: {m}", **tol)


def assert_equal_states(a, b):
    """Two (nested) state dicts are equal, tensors bit for bit."""
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict)), (a, b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_equal_states(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_equal_states(x, y)
    elif torch.is_tensor(a):
        assert torch.equal(a, b)
    else:
        assert a == b or (a != a and b != b), (a, b)


class Killed(Exception):
    """A run killed by :class:`KillAt`."""


class KillAt(Hook):
    """Kill the run at the end of iteration ``iters`` or of epoch ``epochs`` (after
    CheckpointHook saved), as an interrupted job."""

    priority = "LOWEST"

    def __init__(self, iters=None, epochs=None):
        self.iters, self.epochs = iters, epochs

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iters:
            raise Killed(f"killed after iteration {self.iters}")

    def after_train_epoch(self, runner):
        if runner.epoch + 1 == self.epochs:
            raise Killed(f"killed after epoch {self.epochs}")
